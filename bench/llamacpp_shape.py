#!/usr/bin/env python3
# llamacpp_shape.py — a llama.cpp GGUF with Gemma 4 E4B's (or E2B's) text shapes and random weights, to run llama.cpp
# on the same shapes as `gemma4c bench --shape` (speed does not depend on the values).
#
#   python3 bench/llamacpp_shape.py LLAMA_CPP_CHECKOUT OUT.gguf [e4b|e2b]
#
# llama.cpp reads it as its `gemma2` architecture (the closest one every llama.cpp release has): the decoder's
# matrices at Q4_0, the token embedding / tied output at Q6_K (what `llama-quantize ... Q4_0` writes), float norms, a
# placeholder vocabulary of the right size. What it leaves out against Gemma 4: the per-layer embeddings (a table
# lookup plus two small products), the wider head (512) of the full-attention layers, the KV sharing of the last
# layers, E2B's double-wide feed-forward from layer 15 on; so it reads about as many weight bytes per token (2.73 GB
# for E4B against gemma4c's 2.795 GB).
# Needs numpy and llama.cpp's gguf-py (in its checkout; Debian: python3-numpy python3-sentencepiece python3-yaml).
import sys

import numpy as np

if len(sys.argv) < 3:
    sys.exit("usage: llamacpp_shape.py LLAMA_CPP_CHECKOUT OUT.gguf [e4b|e2b]")
sys.path.insert(0, sys.argv[1] + "/gguf-py")
import gguf  # noqa: E402

SHAPES = {  # hidden, layers, heads, kv heads, head dim, feed-forward, vocabulary
    "e4b": (2560, 42, 8, 2, 256, 10240, 262144),
    "e2b": (1536, 35, 8, 1, 256, 6144, 262144),
}
shape = sys.argv[3] if len(sys.argv) > 3 else "e4b"
if shape not in SHAPES:
    sys.exit(f"llamacpp_shape.py: unknown shape {shape!r} (e4b or e2b)")
hidden, layers, heads, kv_heads, head_dim, ffn, vocab = SHAPES[shape]
rng = np.random.default_rng(1)


def q4_0(rows, cols):
    """Blocks of 32: an f16 scale then 16 bytes of nibbles; one small scale so that activations stay finite."""
    b = rng.integers(0, 256, size=(rows * cols // 32, 18), dtype=np.uint8)
    b[:, 0:2] = np.frombuffer(np.float16(0.02).tobytes(), dtype=np.uint8)
    return b.reshape(rows, cols // 32 * 18)


def q6_k(rows, cols):
    """Super-blocks of 256: 128 + 64 bytes of 6-bit values, 16 int8 sub-block scales, an f16 scale."""
    b = rng.integers(0, 256, size=(rows * cols // 256, 210), dtype=np.uint8)
    b[:, 192:208] = rng.integers(1, 32, size=(b.shape[0], 16), dtype=np.uint8)
    b[:, 208:210] = np.frombuffer(np.float16(0.001).tobytes(), dtype=np.uint8)
    return b.reshape(rows, cols // 256 * 210)


w = gguf.GGUFWriter(sys.argv[2], "gemma2")
w.add_context_length(8192)
w.add_embedding_length(hidden)
w.add_block_count(layers)
w.add_feed_forward_length(ffn)
w.add_head_count(heads)
w.add_head_count_kv(kv_heads)
w.add_key_length(head_dim)
w.add_value_length(head_dim)
w.add_layer_norm_rms_eps(1e-6)
w.add_sliding_window(512)
w.add_final_logit_softcapping(30.0)
w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
tokens = [b"<pad>", b"<eos>", b"<bos>", b"<unk>"] + [b"<0x%02X>" % i for i in range(256)]
tokens += [("\u2581w%d" % i).encode() for i in range(vocab - len(tokens))]
types = [gguf.TokenType.CONTROL] * 3 + [gguf.TokenType.UNKNOWN] + [gguf.TokenType.BYTE] * 256
types += [gguf.TokenType.NORMAL] * (vocab - len(types))
w.add_tokenizer_model("llama")
w.add_token_list(tokens)
w.add_token_scores([0.0] * vocab)
w.add_token_types(types)
w.add_bos_token_id(2)
w.add_eos_token_id(1)
w.add_unk_token_id(3)
w.add_pad_token_id(0)
w.add_add_bos_token(True)

Q4, Q6 = gguf.GGMLQuantizationType.Q4_0, gguf.GGMLQuantizationType.Q6_K
w.add_tensor("token_embd.weight", q6_k(vocab, hidden), raw_dtype=Q6)
w.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
for i in range(layers):
    for name in ("attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm"):
        w.add_tensor(f"blk.{i}.{name}.weight", np.ones(hidden, dtype=np.float32))
    for name, rows, cols in (("attn_q", heads * head_dim, hidden), ("attn_k", kv_heads * head_dim, hidden),
                             ("attn_v", kv_heads * head_dim, hidden), ("attn_output", hidden, heads * head_dim),
                             ("ffn_gate", ffn, hidden), ("ffn_up", ffn, hidden), ("ffn_down", hidden, ffn)):
        w.add_tensor(f"blk.{i}.{name}.weight", q4_0(rows, cols), raw_dtype=Q4)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
