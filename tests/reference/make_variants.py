#!/usr/bin/env python3
"""make_variants.py — small Gemma 4 checkpoints of other shapes than the golden tiny one, with transformers' text outputs.

The golden tiny checkpoint fixes one choice of every shape knob. A Gemma 4 text decoder may differ in all of them,
and the engine must read each from config.json: heads and kv heads (grouped by 3, or one kv head), head dims that
are not powers of two, a sliding window of odd length, no KV sharing or a different count of shared layers and a
different layer pattern, the double-wide MLP off, no final logit softcap, other RoPE thetas and partial rotary
factors. Each variant is built by the golden generator (`../shared/golden/make_golden.py`: its `build_checkpoint`
writes the published layout, bf16, sharded, and its `text_golden` records a 48-token prompt's logits, hidden states
and per-layer inputs, and 36 greedy steps with a KV cache, all float32 on the CPU with sdpa attention) and written to
tests/data/variants/<name>/{checkpoint, text.safetensors}; tests/test_text_golden.c checks the engine against them.

usage (where torch + transformers 5.17 are): python3 tests/reference/make_variants.py [MAKE_GOLDEN_DIR] [OUT_DIR]
  MAKE_GOLDEN_DIR: the folder holding make_golden.py (default ../shared/golden); OUT_DIR: tests/data/variants
"""
import copy
import json
import os
import shutil
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "..", "shared", "golden")
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(REPO, "tests", "data", "variants")
sys.path.insert(0, GOLDEN)
import make_golden  # noqa: E402
import torch  # noqa: E402

S, F = "sliding_attention", "full_attention"


def variant(seed, shard_size, **text):
    spec = copy.deepcopy(make_golden.TINY)
    spec["seed"] = seed
    spec["text"].update(text)
    spec["unused_shared_kv_weights"] = False
    # the towers are not what these variants test: the smallest the configuration allows, to keep the files small
    spec["vision"].update(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=1,
                          num_key_value_heads=1, head_dim=16, position_embedding_size=64)
    spec["audio"].update(hidden_size=16, num_hidden_layers=1, num_attention_heads=1, output_proj_dims=16)
    spec["shard_size"] = shard_size  # one file, or several with an index
    return spec


VARIANTS = {
    # grouped-query attention by 3, head dims 12 / 24, an odd window, 2 of 5 layers sharing KV, double-wide MLP
    "gqa3": variant(4321, "50MB", hidden_size=48, intermediate_size=96, num_hidden_layers=5, num_attention_heads=6,
                    num_key_value_heads=2, head_dim=12, global_head_dim=24, hidden_size_per_layer_input=6,
                    num_kv_shared_layers=2, use_double_wide_mlp=True, sliding_window=5,
                    layer_types=[S, S, F, S, F]),
    # one kv head, no KV sharing, no double-wide MLP, no final softcap, other RoPE thetas and rotary fraction
    "mqa": variant(8765, "200KB", hidden_size=64, intermediate_size=160, num_hidden_layers=6, num_attention_heads=4,
                   num_key_value_heads=1, head_dim=16, global_head_dim=32, hidden_size_per_layer_input=8,
                   num_kv_shared_layers=0, use_double_wide_mlp=False, sliding_window=16,
                   final_logit_softcapping=None, layer_types=[S, F, S, S, S, F],
                   rope_parameters={F: {"rope_type": "proportional", "partial_rotary_factor": 0.5,
                                        "rope_theta": 500000.0},
                                    S: {"rope_type": "default", "rope_theta": 20000.0}}),
}


def main():
    torch.set_num_threads(8)
    for name, spec in VARIANTS.items():
        d = os.path.join(OUT, name)
        ck = os.path.join(d, "checkpoint")
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(ck)
        make_golden.build_checkpoint(spec, ck)
        m = make_golden.load_reference(ck)
        make_golden.text_golden(m, spec, d)
        tc = json.load(open(os.path.join(ck, "config.json")))["text_config"]
        for key, want in spec["text"].items():  # the file must say what the variant is meant to test
            assert tc.get(key) == want, f"{name}: config.json has {key}={tc.get(key)!r}, wanted {want!r}"
        print(name, "written:", sorted(os.listdir(ck)), flush=True)


if __name__ == "__main__":
    main()
