#!/usr/bin/env bash
# run.sh — runs every built libFuzzer harness for a fixed time, seeded with small real inputs; fails on a crash.
# Harnesses that make their own seeds (fuzz_state saves real session states, fuzz_openai turns the chat-template
# cases into request bodies) write them into $GEMMA4C_FUZZ_SEEDS, set here to the harness's seed directory.
set -eu
BUILD="$1"
SECONDS_EACH="${2:-20}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
GOLDEN="${GEMMA4C_GOLDEN:-$ROOT/../shared/golden}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

seed() { # harness, files...
  local dir="$WORK/seeds-$1"; shift
  mkdir -p "$dir"
  for f in "$@"; do [ -f "$f" ] && head -c 65536 "$f" >"$dir/$(basename "$f")"; done
  echo "$dir"
}

status=0
for bin in "$BUILD"/fuzz_*; do
  [ -x "$bin" ] || continue
  name="$(basename "$bin")"
  case "$name" in
    fuzz_config) seeds=$(seed "$name" "$GOLDEN/tiny/checkpoint/config.json" "$GOLDEN/tiny/checkpoint/generation_config.json") ;;
    fuzz_safetensors) seeds=$(seed "$name" "$GOLDEN/tiny/reference/vision_small.safetensors") ;;
    fuzz_chat) seeds=$(seed "$name" "$ROOT/tests/data/chat_cases.json") ;;
    fuzz_image) seeds=$(seed "$name" "$GOLDEN/media/small.png" "$GOLDEN/media/panorama.png" "$GOLDEN/media/coffee.jpg") ;;
    fuzz_audio) seeds=$(seed "$name" "$GOLDEN/media/speech_16k.wav") ;;
    fuzz_video) seeds=$(seed "$name" "$GOLDEN/media/clip.mp4") ;;
    fuzz_openai) seeds=$(seed "$name" "$ROOT"/fuzz/seeds/openai/*) ;;
    fuzz_schema) seeds=$(seed "$name" "$ROOT"/fuzz/seeds/schema/*) ;;
    *) seeds=$(seed "$name") ;;
  esac
  mkdir -p "$WORK/corpus-$name"
  echo "fuzzing $name for ${SECONDS_EACH}s"
  if ! GEMMA4C_GOLDEN="$GOLDEN" GEMMA4C_FUZZ_SEEDS="$seeds" \
       "$bin" -max_total_time="$SECONDS_EACH" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
       -artifact_prefix="$WORK/" "$WORK/corpus-$name" "$seeds" >"$WORK/$name.log" 2>&1; then
    echo "FAIL: $name found a problem:"; tail -40 "$WORK/$name.log"; status=1
    mkdir -p "$ROOT/fuzz/crashes" && cp "$WORK"/crash-* "$WORK"/leak-* "$WORK"/timeout-* "$ROOT/fuzz/crashes/" 2>/dev/null || true
  else
    grep -E "^#[0-9]+.*DONE" "$WORK/$name.log" | tail -1 || true
  fi
done
exit $status
