#!/usr/bin/env python3
"""make_variants.py — small Gemma 4 checkpoints of other shapes than the golden tiny one, with transformers' outputs.

The golden tiny checkpoint fixes one choice of every shape knob. A Gemma 4 text decoder may differ in all of them,
and the engine must read each from config.json: heads and kv heads (grouped by 3, or one kv head), head dims that
are not powers of two, a sliding window of odd length, no KV sharing or a different count of shared layers and a
different layer pattern, the double-wide MLP off, no final logit softcap, other RoPE thetas and partial rotary
factors, keys that double as values on full-attention layers with their own kv head count, no per-layer inputs. Each variant is built by the golden generator (`../shared/golden/make_golden.py`: its `build_checkpoint`
writes the published layout, bf16, sharded, and its `text_golden` records a 48-token prompt's logits, hidden states
and per-layer inputs, and 36 greedy steps with a KV cache, all float32 on the CPU with sdpa attention) and written to
tests/data/variants/<name>/{checkpoint, text.safetensors}; tests/test_text_golden.c checks the engine against them.

The `towers` variant turns the knobs of the vision and audio encoders instead: patch size 14 and 2 x 2 pooling,
grouped-query vision attention with head dim 12, standardized output and plain linears (no clipping); an audio
conformer of 3 layers with 4 heads, another second subsampling channel count and kernel, chunks of 8 with 9 left
and 2 right of context, another logit cap. Its references start from files: the golden media at every soft-token
budget the processor accepts, two audio clips (the golden speech and a 0.9 s cut of it, stored beside the
checkpoint), the golden video clip, and one prompt that interleaves an image and a clip; cases.json lists them for
tests/test_media_variants.c.

usage (where torch + transformers 5.17 are):
  python3 tests/reference/make_variants.py [MAKE_GOLDEN_DIR] [OUT_DIR] [NAME...]
  MAKE_GOLDEN_DIR: the folder holding make_golden.py and media/ (default ../shared/golden); OUT_DIR:
  tests/data/variants; NAMEs: the variants to build (default all)
"""
import copy
import json
import os
import shutil
import sys
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "..", "shared", "golden")
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(REPO, "tests", "data", "variants")
sys.path.insert(0, GOLDEN)
import make_golden  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

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
    # the larger models' attention: keys double as values on full layers, which have their own kv head count; no
    # per-layer inputs, no KV sharing
    "keqv": variant(1357, "300KB", hidden_size=64, intermediate_size=128, num_hidden_layers=6, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=16, global_head_dim=32, attention_k_eq_v=True,
                    num_global_key_value_heads=1, hidden_size_per_layer_input=0, num_kv_shared_layers=0,
                    use_double_wide_mlp=False, sliding_window=6, layer_types=[S, S, F, S, S, F]),
}


def towers_spec():
    spec = copy.deepcopy(make_golden.TINY)
    spec["seed"] = 2468
    spec["unused_shared_kv_weights"] = False
    spec["shard_size"] = "500KB"
    spec["text"].update(num_hidden_layers=4, num_kv_shared_layers=1, layer_types=[S, F, S, F])
    spec["vision"].update(hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, head_dim=12, patch_size=14, pooling_kernel_size=2,
                          position_embedding_size=512, use_clipped_linears=False, standardize=True,
                          rms_norm_eps=1e-5)
    # the reference sizes its input projection as (channels[0] // 4) * channels[1], which is the subsampled
    # output only when channels[0] is the 128 mel bins: the second count is the one a checkpoint can change
    spec["audio"].update(hidden_size=48, num_hidden_layers=3, num_attention_heads=4, subsampling_conv_channels=[128, 8],
                         conv_kernel_size=3, attention_chunk_size=8, attention_context_left=9,
                         attention_context_right=2, attention_logit_cap=30.0, use_clipped_linears=False,
                         output_proj_dims=40, rms_norm_eps=1e-5)
    return spec


# (reference name, file under the golden media/ or beside the checkpoint, soft-token budget)
TOWER_IMAGES = [("coffee_70", "coffee.jpg", 70), ("panorama_140", "panorama.png", 140),
                ("chelsea_280", "chelsea.png", 280), ("chelsea_560", "chelsea.png", 560),
                ("small_1120", "small.png", 1120)]


def image_case(m, vc, path, budget):
    from transformers.models.gemma4.image_processing_pil_gemma4 import Gemma4ImageProcessorPil
    ip = Gemma4ImageProcessorPil(max_soft_tokens=budget, patch_size=vc["patch_size"],
                                 pooling_kernel_size=vc["pooling_kernel_size"])
    bf = ip(images=[make_golden.load_image(path).convert("RGB")], return_tensors="pt")
    pv, pos = bf["pixel_values"], bf["image_position_ids"]
    with torch.no_grad():
        feats = torch.cat(list(m.model.get_image_features(pv, pos, return_dict=True).pooler_output), 0)
    return int(bf["num_soft_tokens_per_image"][0]), pv, pos, feats


def audio_case(m, wave):
    from transformers.models.gemma4.feature_extraction_gemma4 import Gemma4AudioFeatureExtractor
    bf = Gemma4AudioFeatureExtractor()([wave], sampling_rate=16000, return_tensors="pt")
    feats, mask = bf["input_features"], bf["input_features_mask"]
    with torch.no_grad():
        ao = m.model.get_audio_features(feats, mask, return_dict=True)
    valid = ao.attention_mask[0]
    return int(valid.sum()), feats, mask, ao.pooler_output[0][valid]


def towers_golden(m, spec, d):
    media = os.path.join(GOLDEN, "media")
    cases = []
    for name, fname, budget in TOWER_IMAGES:
        n, pv, pos, feats = image_case(m, spec["vision"], os.path.join(media, fname), budget)
        save_file({"image_features": make_golden.f32(feats)}, os.path.join(d, f"vision_{name}.safetensors"))
        cases.append({"kind": "image", "file": "media/" + fname, "budget": budget, "tokens": n,
                      "reference": f"vision_{name}.safetensors"})
        make_golden.log(f"towers image {name}: {n} soft tokens")
    import wave
    with wave.open(os.path.join(media, "speech_16k.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        speech = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    with wave.open(os.path.join(d, "short.wav"), "wb") as w:  # 0.9 s: not a whole number of chunks
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(speech[:14400].tobytes())
    clips = [("speech", "media/speech_16k.wav", speech), ("short", "short.wav", speech[:14400])]
    audio = {}
    for name, fname, pcm in clips:
        n, feats, mask, emb = audio_case(m, pcm.astype(np.float32) / 32768.0)
        save_file({"audio_features": make_golden.f32(emb)}, os.path.join(d, f"audio_{name}.safetensors"))
        cases.append({"kind": "audio", "file": fname, "tokens": n, "reference": f"audio_{name}.safetensors"})
        audio[name] = (n, feats, mask)
        make_golden.log(f"towers audio {name}: {n} tokens")
    # clip.mp4 decoded by OpenCV and sampled as the golden video was, each frame encoded at the video budget; four
    # frames' features kept (the frames are encoded one by one)
    import cv2
    from transformers.models.gemma4.video_processing_gemma4 import Gemma4VideoProcessor
    cap = cv2.VideoCapture(os.path.join(media, "clip.mp4"))
    fps, frames = cap.get(cv2.CAP_PROP_FPS), []
    while True:
        ok, fr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(fr, cv2.COLOR_BGR2RGB))
    frames = np.stack(frames)
    meta = {"fps": float(fps), "total_num_frames": int(len(frames)), "duration": len(frames) / fps,
            "width": int(frames.shape[2]), "height": int(frames.shape[1])}
    vp = Gemma4VideoProcessor(patch_size=spec["vision"]["patch_size"],
                              pooling_kernel_size=spec["vision"]["pooling_kernel_size"])
    bf = vp(videos=[frames], video_metadata=[meta], return_tensors="pt")
    pv, pos = bf["pixel_values_videos"], bf["video_position_ids"]
    with torch.no_grad():
        vf = list(m.model.get_video_features(pv, pos, return_dict=True).pooler_output)
    per = int(bf["num_soft_tokens_per_video"][0])
    pick = [0, 1, pv.shape[1] // 2, pv.shape[1] - 1]
    feats = torch.cat(vf, 0).reshape(pv.shape[1], per, -1)[pick]
    save_file({"frames": torch.tensor(pick, dtype=torch.int32), "video_features": make_golden.f32(feats)},
              os.path.join(d, "video_clip.safetensors"))
    cases.append({"kind": "video", "file": "media/clip.mp4", "frames": int(pv.shape[1]), "tokens_per_frame": per,
                  "reference": "video_clip.safetensors"})
    make_golden.log(f"towers video: {pv.shape[1]} frames x {per} soft tokens")
    # one prompt through the whole model: text, the 70-token coffee, text, the short clip, text
    ids = spec["ids"]
    n_img, pv, pos, _ = image_case(m, spec["vision"], os.path.join(media, "coffee.jpg"), 70)
    n_aud, feats, mask = audio["short"]
    seq = ([2, 10, 11, ids["boi_token_id"]] + [ids["image_token_id"]] * n_img + [ids["eoi_token_id"], 13,
           ids["boa_token_id"]] + [ids["audio_token_id"]] * n_aud + [ids["eoa_token_index"], 15, 16])
    x = torch.tensor([seq])
    with torch.no_grad():
        o = m(input_ids=x, pixel_values=pv, image_position_ids=pos, input_features=feats, input_features_mask=mask,
              use_cache=False)
    save_file({"input_ids": x[0].to(torch.int32), "logits": make_golden.f32(o.logits[0])},
              os.path.join(d, "multimodal.safetensors"))
    cases.append({"kind": "prompt", "media": ["media/coffee.jpg", "short.wav"], "budget": 70,
                  "reference": "multimodal.safetensors"})
    make_golden.log(f"towers prompt: {len(seq)} tokens")
    json.dump(cases, open(os.path.join(d, "cases.json"), "w"), indent=1)


def fresh_dir(name):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "checkpoint"))
    return d, os.path.join(d, "checkpoint")


def build_towers():
    d, ck = fresh_dir("towers")
    spec = towers_spec()
    make_golden.build_checkpoint(spec, ck)
    c = json.load(open(os.path.join(ck, "config.json")))
    for part in ("vision", "audio"):  # the file must say what the variant is meant to test
        for key, want in spec[part].items():
            got = c[part + "_config"].get(key)
            assert got == want, f"towers: {part}_config.{key}={got!r}, wanted {want!r}"
    towers_golden(make_golden.load_reference(ck), spec, d)


def build_text(name):
    spec = VARIANTS[name]
    d, ck = fresh_dir(name)
    make_golden.build_checkpoint(spec, ck)
    if "num_global_key_value_heads" in spec["text"]:
        # transformers 5.17 turns it into a per-layer override when the config is made and does not write it back:
        # the file must carry it, as the published larger checkpoints do, or a reload builds other shapes
        path = os.path.join(ck, "config.json")
        full = json.load(open(path))
        full["text_config"]["num_global_key_value_heads"] = spec["text"]["num_global_key_value_heads"]
        json.dump(full, open(path, "w"), indent=2)
    tc = json.load(open(os.path.join(ck, "config.json")))["text_config"]
    for key, want in spec["text"].items():  # the file must say what the variant is meant to test
        assert tc.get(key) == want, f"{name}: config.json has {key}={tc.get(key)!r}, wanted {want!r}"
    m = make_golden.load_reference(ck)
    if not spec["text"]["hidden_size_per_layer_input"]:
        # no per-layer inputs: the golden generator's probe of them records an empty [1, T, layers, 0]
        L, lm = spec["text"]["num_hidden_layers"], m.model.language_model
        lm.get_per_layer_inputs = lambda ids, emb: torch.zeros(ids.shape[0], ids.shape[1], L, 0)
        lm.project_per_layer_inputs = lambda emb, ple: torch.zeros(emb.shape[0], emb.shape[1], L, 0)
    make_golden.text_golden(m, spec, d)


def main():
    torch.set_num_threads(8)
    failed = []
    for name in sys.argv[3:] or list(VARIANTS) + ["towers"]:
        try:  # one variant's failure must not cost the others
            build_towers() if name == "towers" else build_text(name)
            print(name, "written:", sorted(os.listdir(os.path.join(OUT, name))), flush=True)
        except Exception:
            traceback.print_exc()
            failed.append(name)
    if failed:
        sys.exit("failed: " + " ".join(failed))


if __name__ == "__main__":
    main()
