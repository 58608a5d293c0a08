"""make_bidirectional.py — reference logits for use_bidirectional_attention = "vision" (run where transformers is).

The golden tiny checkpoint with its text config switched to "vision": two images and one audio clip in one prompt,
run through Gemma4ForConditionalGeneration with mm_token_type_ids as the processor makes them (1 image, 2 video,
3 audio), so image spans attend to themselves bidirectionally on sliding layers. Stores every position's logsumexp
and argmax and the full logits of a subset of rows, to keep the file small.

usage: python3 make_bidirectional.py GOLDEN_DIR OUT.safetensors
"""
import json
import os
import shutil
import sys
import tempfile

import torch
from safetensors.torch import load_file, save_file


def image_inputs(path):
    t = load_file(path)
    pv = t["pixel_values_u8"].to(torch.float32) / 255.0
    return int(t["num_soft_tokens"][0]), pv, t["image_position_ids"].to(torch.int64)


def main():
    golden, out = sys.argv[1], sys.argv[2]
    from transformers import Gemma4ForConditionalGeneration

    tmp = tempfile.mkdtemp()
    ckpt = os.path.join(tmp, "checkpoint")
    shutil.copytree(os.path.join(golden, "tiny", "checkpoint"), ckpt)
    cpath = os.path.join(ckpt, "config.json")
    c = json.load(open(cpath))
    c["text_config"]["use_bidirectional_attention"] = "vision"
    json.dump(c, open(cpath, "w"), indent=2, sort_keys=True)

    ref = os.path.join(golden, "tiny", "reference")
    n1, pv1, pos1 = image_inputs(os.path.join(ref, "vision_photo.safetensors"))
    n2, pv2, pos2 = image_inputs(os.path.join(ref, "vision_small.safetensors"))
    a = load_file(os.path.join(ref, "audio_speech.safetensors"))
    feats, fmask = a["input_features"][None], a["input_features_mask"][None].bool()
    n_aud = int(a["audio_token_mask"].sum())

    img, aud = c["image_token_id"], c["audio_token_id"]
    boi, eoi, boa, eoa = c["boi_token_id"], c["eoi_token_id"], c["boa_token_id"], c["eoa_token_index"]
    seq = ([2, 10, 11, boi] + [img] * n1 + [eoi, 12, 13, boi] + [img] * n2 + [eoi, 14, boa] + [aud] * n_aud +
           [eoa, 15, 16, 17])
    x = torch.tensor([seq])
    tt = torch.zeros_like(x)
    tt[x == img] = 1
    tt[x == c["video_token_id"]] = 2
    tt[x == aud] = 3

    results = {}
    for impl in ["sdpa", "eager"]:
        m = Gemma4ForConditionalGeneration.from_pretrained(ckpt, dtype=torch.float32, attn_implementation=impl).eval()
        assert m.config.text_config.use_bidirectional_attention == "vision"
        with torch.no_grad():
            kw = dict(input_ids=x, pixel_values=torch.stack([pv1, pv2]), image_position_ids=torch.stack([pos1, pos2]),
                      input_features=feats, input_features_mask=fmask, use_cache=False)
            results[impl] = m(mm_token_type_ids=tt, **kw).logits[0].float()
            if impl == "sdpa":
                causal = m(**kw).logits[0].float()
    logits = results["sdpa"]
    print(f"{len(seq)} tokens ({n1} + {n2} image, {n_aud} audio); sdpa vs eager {float((logits - results['eager']).abs().max()):.3g}; "
          f"bidirectional vs causal max |d| {float((logits - causal).abs().max()):.3g}")

    T = len(seq)
    rows = sorted(set(range(0, T, 9)) | {t for t in range(T) if seq[t] not in (img, aud)} | {T - 1})
    save_file({
        "input_ids": x[0].to(torch.int32),
        "mm_token_type_ids": tt[0].to(torch.int32),
        "logsumexp": torch.logsumexp(logits, -1).contiguous(),
        "argmax": logits.argmax(-1).to(torch.int32),
        "rows": torch.tensor(rows, dtype=torch.int32),
        "logits_rows": logits[rows].contiguous(),
        "causal_logsumexp": torch.logsumexp(causal, -1).contiguous(),
    }, out, metadata={
        "about": "golden tiny checkpoint with text_config.use_bidirectional_attention = \"vision\"; image 1 = "
                 "vision_photo inputs, image 2 = vision_small inputs, audio = audio_speech inputs; logits_rows are "
                 "the full logits at positions `rows`; causal_logsumexp: the same prompt without mm_token_type_ids"})


if __name__ == "__main__":
    main()
