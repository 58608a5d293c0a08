#!/usr/bin/env bash
# cli_commands.sh — the gemma4c command end to end: answers, streaming, and one clear error line for bad input.
set -u
BIN="$1"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
GOLDEN="${GEMMA4C_GOLDEN:-$ROOT/../shared/golden}"
TINY="$GOLDEN/tiny/checkpoint"
if [ ! -d "$TINY" ]; then
  if [ "${CI:-}" = "true" ]; then echo "golden data not found under CI"; exit 1; fi
  echo "SKIPPED: golden data not found"; exit 77
fi
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
pass=0; fail=0

ok() { # name, command...: must exit 0
  local name="$1"; shift
  if "$@" >"$TMP/out" 2>"$TMP/err"; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL: $name (exit $?)"; cat "$TMP/err"; fi
}
bad() { # name, expected text in the error, command...: must fail with one stderr line containing it
  local name="$1" want="$2"; shift 2
  "$@" >"$TMP/out" 2>"$TMP/err"; local rc=$?
  local lines; lines=$(wc -l <"$TMP/err")
  if [ $rc -ne 0 ] && [ "$lines" -eq 1 ] && grep -q -- "$want" "$TMP/err" && grep -q "^gemma4c: error: " "$TMP/err"; then
    pass=$((pass+1))
  else
    fail=$((fail+1)); echo "FAIL: $name (exit $rc, $lines stderr lines, wanted '$want'):"; cat "$TMP/err"
  fi
}
has() { # name, file, text
  if grep -q -- "$3" "$2"; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL: $1: '$3' not in $2"; cat "$2"; fi
}

# The quick start: no model at all.
ok "run without a model" "$BIN" run -n 12 --seed 1
has "synthetic model is labelled" "$TMP/err" "RANDOM weights"
ok "run tiny checkpoint" "$BIN" run -m "$TINY" -p "Hello" -n 8 -v
has "timings with -v" "$TMP/err" "tok/s"
has "time to first token" "$TMP/err" "time to first token"
ok "greedy raw prompt" "$BIN" run -m "$TINY" -p "Hello" --raw --greedy -n 4
ok "prompt from stdin" bash -c "echo 'Hi there' | '$BIN' run -m '$TINY' -p - -n 4 --temp 0.7 --top-k 20 --top-p 0.9 --min-p 0.05 --repeat-penalty 1.1 --seed 3"
ok "chat, several turns" bash -c "printf 'Hi\nTell me more\n/reset\nAgain\n/exit\n' | '$BIN' chat -m '$TINY' -n 6 --think"
ok "logits" "$BIN" logits -m "$TINY" --ids 2,105,300,107 --out "$TMP/logits.safetensors"
size=$(stat -c %s "$TMP/logits.safetensors")
if [ "$size" -gt $((4*512*4)) ]; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL: logits file too small ($size)"; fi

# A repo id found in the Hugging Face cache.
mkdir -p "$TMP/hf/hub/models--google--tiny-gemma/refs" "$TMP/hf/hub/models--google--tiny-gemma/snapshots/abc123"
echo abc123 >"$TMP/hf/hub/models--google--tiny-gemma/refs/main"
for f in "$TINY"/*; do ln -s "$f" "$TMP/hf/hub/models--google--tiny-gemma/snapshots/abc123/"; done
ok "repo id from the cache" env HF_HOME="$TMP/hf" "$BIN" run -m google/tiny-gemma -p hi -n 3
bad "repo id not in the cache" "hf download" env HF_HOME="$TMP/hf" "$BIN" run -m google/other -p hi

# Bad input: one line, non-zero exit.
bad "no such model" "no such model" "$BIN" run -m "$TMP/nowhere" -p hi
mkdir -p "$TMP/empty"
bad "directory without config" "config.json" "$BIN" run -m "$TMP/empty" -p hi
bad "unknown option" "unknown option" "$BIN" run --bogus
bad "unknown command" "unknown command" "$BIN" fly
bad "bad number" "integer" "$BIN" run -m "$TINY" -p hi -n many
bad "missing value" "needs a value" "$BIN" run -m "$TINY" -p
bad "run needs a prompt" "prompt" "$BIN" run -m "$TINY"
bad "temperature range" "number" "$BIN" run -m "$TINY" -p hi --temp -1
ok "image and audio in a prompt" "$BIN" run -m "$TINY" -p "What is this?" --image "$GOLDEN/media/small.png" --audio "$GOLDEN/media/speech_16k.wav" -n 4 --greedy
ok "chat with media" bash -c "printf 'Describe it.\nAnd again?\n/exit\n' | '$BIN' chat -m '$TINY' --image '$GOLDEN/media/small.png' --audio '$GOLDEN/media/speech_16k.wav' -n 4 --greedy"
ok "image features" "$BIN" features -m "$TINY" --image "$GOLDEN/media/chelsea.png" --max-soft-tokens 70 --out "$TMP/img.safetensors"
ok "audio features" "$BIN" features -m "$TINY" --audio "$GOLDEN/media/speech_16k.wav" --out "$TMP/aud.safetensors"
ok "video in a prompt" "$BIN" run -m "$TINY" -p "What happens?" --video "$GOLDEN/media/clip.mp4" -n 3 --greedy
ok "video features" "$BIN" features -m "$TINY" --video "$GOLDEN/media/clip.mp4" --out "$TMP/vid.safetensors"
bad "not a video" "speech_16k.wav" "$BIN" run -m "$TINY" -p hi --video "$GOLDEN/media/speech_16k.wav"
bad "not an image" "$GOLDEN/media/speech_16k.wav" "$BIN" run -m "$TINY" -p hi --image "$GOLDEN/media/speech_16k.wav"
bad "not audio" "coffee.jpg" "$BIN" run -m "$TINY" -p hi --audio "$GOLDEN/media/coffee.jpg"
bad "missing image" "nothing.png" "$BIN" run -m "$TINY" -p hi --image "$TMP/nothing.png"
bad "bad budget" "max-soft-tokens" "$BIN" features -m "$TINY" --image "$GOLDEN/media/small.png" --max-soft-tokens 100 --out "$TMP/x.safetensors"
bad "media without placeholders" "placeholder" "$BIN" logits -m "$TINY" --ids 2,105,300 --image "$GOLDEN/media/small.png" --out "$TMP/x.safetensors"
bad "missing gguf" "no such file" "$BIN" run -m "$TMP/model.gguf" -p hi
bad "unknown token id" "outside the vocabulary" "$BIN" logits -m "$TINY" --ids 2,99999 --out "$TMP/x.safetensors"
bad "malformed ids" "not a token id" "$BIN" logits -m "$TINY" --ids 2,abc --out "$TMP/x.safetensors"
bad "trailing comma" "trailing comma" "$BIN" logits -m "$TINY" --ids 2,3, --out "$TMP/x.safetensors"
bad "logits needs --out" "--out" "$BIN" logits -m "$TINY" --ids 2,3
long=$(head -c 3000 /dev/zero | tr '\0' 'a')
bad "prompt longer than the context" "context" "$BIN" run -m "$TINY" -p "$long" -c 64
bad "ids longer than the model's context" "context" "$BIN" logits -m "$TINY" --ids "$(seq -s, 1 5000 | sed 's/[0-9]*/2/g')" --out "$TMP/x.safetensors"
bad "unwritable output" "$TMP/no/dir" "$BIN" logits -m "$TINY" --ids 2,3 --out "$TMP/no/dir/x.safetensors"

# bench on a given checkpoint: the text figures, the one-line JSON, and each encoder's time per input.
ok "bench with media" "$BIN" bench -m "$TINY" --no-bandwidth --image "$GOLDEN/media/small.png" \
  --video "$GOLDEN/media/clip.mp4" --audio "$GOLDEN/media/speech_16k.wav"
has "bench prefill" "$TMP/out" "prefill          512 tokens"
has "bench peak RSS" "$TMP/out" "peak RSS"
has "bench image" "$TMP/out" "small.png: 260 soft tokens"
has "bench video per second" "$TMP/out" "clip.mp4 (8.0 s): 2016 soft tokens in .* s per second of video"
has "bench audio real-time factor" "$TMP/out" "real-time factor"
ok "bench json" "$BIN" bench -m "$TINY" --no-bandwidth --json
has "bench json keys" "$TMP/out" '^{"prefill_tok_s":[0-9.]*,"decode_tok_s":[0-9.]*,"ttft_s":[0-9.]*,"peak_rss_bytes":[0-9]*,"weight_bytes_per_token":[0-9]*'
bad "bench on a missing model" "no-such" "$BIN" bench -m "$TMP/no-such"
# repeated decode runs, the later ones after the sliding rings (window 8) lost the prompt's window
ok "bench decode runs" "$BIN" bench -m "$TINY" --no-bandwidth --runs 3 --prompt-tokens 20 -n 30
has "bench decode runs line" "$TMP/out" "decode           30 tokens: [0-9.]* tok/s (mean of 3 runs; best [0-9.]*; runs [0-9.]* [0-9.]* [0-9.]*)"
ok "bench json runs" "$BIN" bench -m "$TINY" --no-bandwidth --json --runs 2 -n 4
has "bench json best run" "$TMP/out" '"decode_tok_s_best":[0-9.]*,"decode_runs":2,'
# the read-bandwidth keys, zero when the probe is off (the 1 GiB probe itself is a measurement: build/read_bandwidth)
has "bench probe keys" "$TMP/out" '"read_bandwidth_gb_s":0.00,"read_bandwidth_before_gb_s":0.00,"read_bandwidth_after_gb_s":0.00,'
bad "bench zero runs" "--runs" "$BIN" bench -m "$TINY" --runs 0

echo "cli_commands: $pass passed, $fail failed"
[ "$pass" -gt 0 ] || echo "cli_commands: no check ran, so nothing was tested"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
