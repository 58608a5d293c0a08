#!/usr/bin/env python3
"""make_placeholder.py — reference data for multimodal placeholder ids WITHOUT media (run where transformers is).

transformers' Gemma4Model.forward replaces every image / video / audio placeholder id (config.json `image_token_id`,
`video_token_id`, `audio_token_id`) by `text_config.pad_token_id` for both the `embed_tokens` lookup and the
`embed_tokens_per_layer` (PLE) lookup, whether or not media is given. With no pixel_values / input_features those
positions keep the pad embedding: a placeholder then behaves exactly like the pad id. A greedy continuation can itself
generate a placeholder id, and from that step on the reference embeds it as pad. This script records both cases with
the golden tiny checkpoint (float32, sdpa, CPU; the prompt search runs on the GPU if there is one, TF32 off):

  Case A  input_ids (a prompt without placeholder ids, found by a seeded search) whose greedy continuation of N=32
          tokens (explicit loop with a KV cache) contains placeholder ids: greedy_ids, greedy_step_logits,
          prompt_last_logits.
  Case B  ids_with_placeholders (3 image, 1 audio, 2 video placeholders inside ordinary ids, no media) and
          logits_with_placeholders for every position from one forward pass.

It checks (assert) that the continuation contains placeholder ids, that the data tell the reference behaviour (pad
rows) apart from embedding the placeholder ids with their own rows (max |diff| > 1e-2), and that a placeholder is
exactly a pad id (logits with the ids replaced by pad agree).

usage (from the repository root): python3 tests/reference/make_placeholder.py
        [--checkpoint ../shared/golden/tiny/checkpoint] [--out tests/data/placeholder_continuation.safetensors]
"""
import argparse
import copy
import json
import os

import torch
from safetensors.torch import save_file

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

N_STEPS = 32          # greedy tokens after the prompt
SEARCH_SEED = 20260501
SEARCH_ROUNDS = 44    # rounds of SEARCH_BATCH prompts; prompt length 10 + round % 11 (10..20 tokens)
SEARCH_BATCH = 512
EARLY = 12            # a placeholder should occur among the first EARLY greedy tokens
MIN_MARGIN = 0.01     # top-1 minus top-2 logit at every greedy choice, so that float32 engines pick the same ids
CASE_B_SEED = 77


def log(*a):
    print(*a, flush=True)


def load(ckpt):
    from transformers import Gemma4ForConditionalGeneration
    m = Gemma4ForConditionalGeneration.from_pretrained(ckpt, dtype=torch.float32, attn_implementation="sdpa")
    return m.eval()


def greedy(m, ids, n):
    """ids [B, T] on m's device -> (greedy ids [B, n], logits after the prompt [B, V], step logits [B, n, V]).
    step logits s = logits after feeding greedy id s (so greedy id s+1 is their argmax), as in golden text.safetensors."""
    with torch.no_grad():
        o = m(input_ids=ids, use_cache=True)
        past = o.past_key_values
        first = o.logits[:, -1].float()
        nxt = first.argmax(-1, keepdim=True)
        out, steps = [], []
        for _ in range(n):
            out.append(nxt)
            o = m(input_ids=nxt, past_key_values=past, use_cache=True)
            past = o.past_key_values
            steps.append(o.logits[:, -1].float())
            nxt = o.logits[:, -1].argmax(-1, keepdim=True)
    return torch.cat(out, 1), first, torch.stack(steps, 1)


def margins(first, steps):
    """top-1 minus top-2 of the logits that chose each greedy id: [B, n]"""
    chosen = torch.cat([first[:, None], steps[:, :-1]], 1)
    top2 = chosen.topk(2, -1).values
    return top2[..., 0] - top2[..., 1]


def describe(g, ph_names):
    return [(i, int(t), ph_names[int(t)]) for i, t in enumerate(g.tolist()) if int(t) in ph_names]


def search(m, dev, ordinary, ph, eos, n):
    """Seeded search over random prompts (<bos> + ordinary ids) for a greedy continuation with placeholder ids.
    Returns the candidates, best first: (score, prompt list)."""
    g = torch.Generator().manual_seed(SEARCH_SEED)
    ordinary_t = torch.tensor(ordinary)
    ph_t = torch.tensor(sorted(ph))
    eos_t = torch.tensor(sorted(eos))
    cands = []
    for r in range(SEARCH_ROUNDS):
        L = 10 + r % 11
        body = ordinary_t[torch.randint(0, len(ordinary), (SEARCH_BATCH, L - 1), generator=g)]
        ids = torch.cat([torch.full((SEARCH_BATCH, 1), 2, dtype=torch.long), body], 1)
        gi, first, steps = greedy(m, ids.to(dev), n)
        gi, mg = gi.cpu(), margins(first, steps).cpu()
        isph = torch.isin(gi, ph_t)
        for b in torch.nonzero(isph.any(1)).flatten().tolist():
            if torch.isin(gi[b], eos_t).any() or float(mg[b].min()) < MIN_MARGIN:
                continue
            pos = torch.nonzero(isph[b]).flatten().tolist()
            kinds = len(set(gi[b][pos].tolist()))
            if pos[0] >= EARLY:
                continue
            # more kinds first, then an earlier first placeholder, then more placeholders, then a larger margin
            score = (kinds, -pos[0], len(pos), float(mg[b].min()))
            cands.append((score, ids[b].tolist()))
        log(f"search round {r}: prompt length {L}, {int(isph.any(1).sum())} continuations with placeholders, "
            f"{len(cands)} candidates so far")
    cands.sort(key=lambda c: c[0], reverse=True)
    return cands


def own_rows_logits(m, ids):
    """What an engine that embeds placeholder ids with their OWN rows (main and PLE table) would compute."""
    lm = m.model.language_model
    with torch.no_grad():
        emb = lm.embed_tokens(ids)
        ple = lm.get_per_layer_inputs(ids, emb)
        return m(inputs_embeds=emb, per_layer_inputs=ple, use_cache=False).logits[0].float()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=os.path.join(REPO, "..", "shared", "golden", "tiny", "checkpoint"))
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "data", "placeholder_continuation.safetensors"))
    a = ap.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(8)
    import transformers

    cfg = json.load(open(os.path.join(a.checkpoint, "config.json")))
    tc = cfg["text_config"]
    V = tc["vocab_size"]
    pad = tc["pad_token_id"]
    img, vid, aud = cfg["image_token_id"], cfg["video_token_id"], cfg["audio_token_id"]
    ph_names = {img: "image", vid: "video", aud: "audio"}
    ph = set(ph_names)
    eos = set(cfg["eos_token_id"] if isinstance(cfg["eos_token_id"], list) else [cfg["eos_token_id"]])
    eos |= {tc["eos_token_id"]} if not isinstance(tc["eos_token_id"], list) else set(tc["eos_token_id"])
    special = {pad, tc["bos_token_id"]} | eos | ph | {cfg[k] for k in ("boi_token_id", "eoi_token_id", "boa_token_id",
                                                                          "eoa_token_index") if k in cfg}
    # ordinary ids: below the first multimodal special id, not a control id
    ordinary = [t for t in range(3, min(special - {pad, tc["bos_token_id"]} - eos)) if t not in special]
    log(f"transformers {transformers.__version__}, torch {torch.__version__}; vocab {V}, pad {pad}, placeholders "
        f"image {img} video {vid} audio {aud}, eos {sorted(eos)}, ordinary ids {ordinary[0]}..{ordinary[-1]}; "
        f"use_bidirectional_attention = {tc.get('use_bidirectional_attention')!r}")

    m = load(a.checkpoint)                      # the reference: CPU float32
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    ms = copy.deepcopy(m).to(dev) if dev != "cpu" else m
    log(f"search device: {dev} ({torch.cuda.get_device_name(0) if dev == 'cuda' else 'cpu'})")

    # ---- Case A: find a prompt, then recompute it alone on the CPU -------------------------------------------
    cands = search(ms, dev, ordinary, ph, eos, N_STEPS)
    assert cands, "no prompt found whose greedy continuation holds a placeholder id"
    chosen = None
    for rank, (score, prompt) in enumerate(cands[:50]):
        ids = torch.tensor([prompt])
        gi, first, steps = greedy(m, ids, N_STEPS)
        gi, mg = gi[0], margins(first, steps)[0]
        pl = describe(gi, ph_names)
        ok = pl and pl[0][0] < EARLY and float(mg.min()) >= MIN_MARGIN and not any(int(t) in eos for t in gi)
        log(f"candidate {rank}: score {score}, CPU recompute placeholders {pl}, min margin {float(mg.min()):.4f}"
            f"{'' if ok else ' (rejected)'}")
        if ok:
            chosen = (rank, prompt, gi, first[0], steps[0], mg)
            break
    assert chosen is not None, "no candidate survived the CPU recompute"
    rank, prompt, gi, first, steps, mg = chosen
    ids = torch.tensor([prompt])
    pl = describe(gi, ph_names)
    assert len(pl) >= 1 and not (set(prompt) & ph)
    log(f"Case A: prompt ({len(prompt)} tokens) {prompt}")
    log(f"Case A: greedy ids {gi.tolist()}")
    log(f"Case A: placeholders (index, id, kind) {pl}; min top-2 margin {float(mg.min()):.4f}")

    # the same tokens through the search device (GPU) and through model.generate must agree
    if dev != "cpu":
        g2, f2, s2 = greedy(ms, ids.to(dev), N_STEPS)
        log(f"Case A: {dev} greedy ids identical: {bool((g2[0].cpu() == gi).all())}; step logits max |cpu-{dev}| "
            f"{float((s2[0].cpu() - steps).abs().max()):.3g}")
    try:
        with torch.no_grad():
            gen = m.generate(input_ids=ids, do_sample=False, max_new_tokens=N_STEPS, min_new_tokens=N_STEPS,
                             top_k=None, top_p=None, temperature=None)
        same = gen[0, len(prompt):].tolist() == gi.tolist()
        log(f"Case A: model.generate(do_sample=False) gives the same {N_STEPS} ids: {same}")
        assert same
    except AssertionError:
        raise
    except Exception as e:  # generate is a cross-check only
        log(f"Case A: model.generate cross-check skipped: {e!r}")

    # teacher forcing over prompt + greedy ids: the full forward agrees with the cached steps
    full = torch.cat([ids, gi[None, :-1]], 1)
    with torch.no_grad():
        tf = m(input_ids=full, use_cache=False).logits[0].float()
    tf_ref = torch.cat([first[None], steps[:-1]], 0)
    err = float((tf[len(prompt) - 1:] - tf_ref).abs().max())
    log(f"Case A: cached steps vs full forward max |diff| {err:.3g}")
    assert err < 1e-3
    # an engine embedding the placeholders with their own rows would compute other logits after the first one
    own = own_rows_logits(m, full)[len(prompt) - 1:]
    k = pl[0][0]                                   # greedy_ids[k] is the first placeholder; its logits are row k+1
    d_after = float((own[k + 1:] - tf_ref[k + 1:]).abs().max())
    d_before = float((own[:k + 1] - tf_ref[:k + 1]).abs().max())
    diverge = [s for s in range(k + 1, N_STEPS) if int(own[s].argmax()) != int(gi[s])]
    log(f"Case A: own-rows vs reference: max |diff| {d_before:.3g} before the first placeholder, {d_after:.3g} after; "
        f"own-rows greedy would first pick another token at greedy index {diverge[0] if diverge else None}")
    assert d_before < 1e-3 and d_after > 1e-2

    # ---- Case B: placeholders in the prompt, no media ---------------------------------------------------------
    gb = torch.Generator().manual_seed(CASE_B_SEED)
    r = [ordinary[i] for i in torch.randint(0, len(ordinary), (16,), generator=gb).tolist()]
    seq_b = [2] + r[0:4] + [img] * 3 + r[4:7] + [aud] + r[7:10] + [vid] * 2 + r[10:16]
    xb = torch.tensor([seq_b])
    with torch.no_grad():
        lb = m(input_ids=xb, use_cache=False).logits[0].float()
        as_pad = xb.clone()
        as_pad[torch.isin(as_pad, torch.tensor(sorted(ph)))] = pad
        lpad = m(input_ids=as_pad, use_cache=False).logits[0].float()
    lown = own_rows_logits(m, xb)
    d_pad, d_own = float((lb - lpad).abs().max()), float((lb - lown).abs().max())
    log(f"Case B: ids {seq_b}")
    log(f"Case B: max |reference - (placeholders replaced by pad {pad})| {d_pad:.3g}; "
        f"max |reference - own rows| {d_own:.3g}")
    assert d_pad < 1e-5 and d_own > 1e-2
    with torch.no_grad():
        lb_dev = ms(input_ids=xb.to(dev), use_cache=False).logits[0].float().cpu()
    log(f"Case B: max |cpu - {dev}| {float((lb - lb_dev).abs().max()):.3g}")

    ph_b = [(i, t, ph_names[t]) for i, t in enumerate(seq_b) if t in ph]
    about = "\n".join([
        "Gemma 4 placeholder ids without media: the golden tiny checkpoint (../shared/golden/tiny/checkpoint) through "
        f"Gemma4ForConditionalGeneration, float32, sdpa, CPU; transformers {transformers.__version__}, torch "
        f"{torch.__version__}; made by tests/reference/make_placeholder.py.",
        f"The reference replaces placeholder ids (image {img}, video {vid}, audio {aud} from config.json) by "
        f"text_config.pad_token_id ({pad}) for both embed_tokens and embed_tokens_per_layer; without media they keep "
        "the pad embedding, i.e. they act exactly like the pad id. Attention stays causal "
        f"(use_bidirectional_attention = {tc.get('use_bidirectional_attention')!r}).",
        f"input_ids [{len(prompt)}] int32: Case A prompt (<bos> + ordinary ids, no placeholder ids; search seed "
        f"{SEARCH_SEED}, candidate {rank}).",
        "prompt_last_logits [V] float32: logits at the prompt's last position (softcapped); greedy_ids[0] is its argmax.",
        f"greedy_ids [{N_STEPS}] int32: greedy continuation with a KV cache (one token per step, no EOS among them).",
        f"greedy_step_logits [{N_STEPS}, V] float32: logits after feeding greedy_ids[s]; greedy_ids[s+1] is the argmax "
        "of row s.",
        "Placeholder ids in greedy_ids (index: id kind): " + ", ".join(f"{i}: {t} {n}" for i, t, n in pl) +
        f". Smallest top-1/top-2 margin of the greedy choices: {float(mg.min()):.4f}.",
        f"ids_with_placeholders [{len(seq_b)}] int32: Case B prompt with placeholders at (index: id kind) " +
        ", ".join(f"{i}: {t} {n}" for i, t, n in ph_b) + "; no pixel_values / input_features.",
        f"logits_with_placeholders [{len(seq_b)}, V] float32: every position's logits from one forward pass.",
        f"Checks: embedding the placeholders with their own rows changes Case B logits by up to {d_own:.3g} and Case A "
        f"step logits after the first placeholder by up to {d_after:.3g}; replacing them by pad changes Case B by "
        f"{d_pad:.3g}.",
    ])
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    save_file({
        "input_ids": ids[0].to(torch.int32).contiguous(),
        "prompt_last_logits": first.contiguous(),
        "greedy_ids": gi.to(torch.int32).contiguous(),
        "greedy_step_logits": steps.contiguous(),
        "ids_with_placeholders": xb[0].to(torch.int32).contiguous(),
        "logits_with_placeholders": lb.contiguous(),
    }, a.out, metadata={"about": about, "transformers_version": transformers.__version__,
                        "torch_version": torch.__version__, "search_seed": str(SEARCH_SEED)})
    log(about)
    log(f"wrote {a.out} ({os.path.getsize(a.out)} bytes)")


if __name__ == "__main__":
    main()
