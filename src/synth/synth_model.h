/* synth_model.h — config.json text for the synthetic models gemma4c builds itself (quick start, bench, tests). */
#ifndef G4_SYNTH_MODEL_H
#define G4_SYNTH_MODEL_H

/* "e2b" and "e4b": the published shapes (gemma4-text.md §1.1; the vision and audio towers of
 * gemma4-multimodal.md), as golden/make_synthetic.py builds them.
 * "small": a few-MB model with the same structure (sliding + full layers, KV sharing, double-wide MLP, PLE)
 * and a 512-token byte-level vocabulary, for the quick start and the tests. Returns NULL for other names. */
const char *g4_synth_config_json(const char *shape);

#endif
