#!/usr/bin/env bash
# cli_serve.sh — `gemma4c serve` on the golden tiny checkpoint, driven by clients no one here wrote: the official
# openai npm package (every endpoint, media, tools, thinking, logprobs, errors, greedy identity with `gemma4c run`
# alone and among 16 concurrent requests), hostile requests over raw sockets, a bounded load test, and the chat
# page in headless Chromium. Then SIGTERM: the server must stop cleanly, with exit status 0.
set -u
BIN="$1"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
GOLDEN="${GEMMA4C_GOLDEN:-$ROOT/../shared/golden}"
TINY="$GOLDEN/tiny/checkpoint"
NODE_DIR="$ROOT/tests/server"
skip() { if [ "${CI:-}" = "true" ]; then echo "$1 under CI"; exit 1; fi; echo "SKIPPED: $1"; exit 77; }
[ -d "$TINY" ] || skip "golden data not found"
command -v node >/dev/null || skip "node not found (make deps-node)"
[ -d "$NODE_DIR/node_modules/openai" ] || skip "tests/server/node_modules missing (make deps-node)"
TMP="$(mktemp -d)"
PIDS=""
trap 'for p in $PIDS; do kill -9 $p 2>/dev/null; done; rm -rf "$TMP"' EXIT
mkdir -p "$TMP/media" && cp "$GOLDEN/media/small.png" "$TMP/media/"
echo "outside the media directory" > "$TMP/secret.txt"

start() { # name, log, extra options...: starts a server on a free port; sets PORT and PID
  local log="$2"; shift 2
  "$BIN" serve -m "$TINY" --port 0 -t 2 "$@" 2>"$log" &
  PID=$!; PIDS="$PIDS $PID"
  for _ in $(seq 1 600); do
    PORT=$(sed -n 's/.* on http:\/\/127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$log" | head -1)
    [ -n "$PORT" ] && return 0
    kill -0 $PID 2>/dev/null || { echo "FAIL: the server did not start:"; cat "$log"; exit 1; }
    sleep 0.1
  done
  echo "FAIL: the server did not say where it listens"; cat "$log"; exit 1
}

stop() { # pid, log: SIGTERM must end the server within 20 s with status 0
  kill -TERM "$1"
  for _ in $(seq 1 200); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$1" 2>/dev/null; then echo "FAIL: the server did not stop on SIGTERM"; cat "$2"; exit 1; fi
  wait "$1"; local rc=$?
  if [ $rc -ne 0 ]; then echo "FAIL: the server exited with $rc"; tail -20 "$2"; exit 1; fi
  grep -q "stopping" "$2" || { echo "FAIL: no shutdown line"; exit 1; }
}

# What `gemma4c run --greedy` answers: the server must answer the same, token for token.
"$BIN" run -m "$TINY" -p "Write a haiku about the sea." --greedy -n 24 -v >"$TMP/run.txt" 2>"$TMP/run.err" ||
  { echo "FAIL: gemma4c run"; cat "$TMP/run.err"; exit 1; }
RUN_TOKENS=$(sed -n "s/.*time to first token [0-9.]* s, \([0-9]*\) tokens.*/\1/p" "$TMP/run.err" | head -1)

start main "$TMP/server.log" --parallel 4 --queue 64 --ctx-size 4096 --media-dir "$TMP/media" --max-body 8000000
MAIN_PID=$PID
export BASE="http://127.0.0.1:$PORT" GOLDEN MEDIA_DIR="$TMP/media" SECRET="$TMP/secret.txt" SERVER_PID=$MAIN_PID
export RUN_TEXT_FILE="$TMP/run.txt" RUN_TOKENS
rc=0
node "$NODE_DIR/openai_client.mjs" || rc=1
node "$NODE_DIR/hostile.mjs" || rc=1
node "$NODE_DIR/load.mjs" || rc=1
if [ -x "$(command -v chromium || true)" ] && [ -d "$NODE_DIR/node_modules/playwright-core" ]; then
  SCREENSHOT="${GEMMA4C_ARTIFACTS:-$ROOT/build}/chat_page.png" node "$NODE_DIR/page.mjs" || rc=1
elif [ "${CI:-}" = "true" ]; then
  echo "FAIL: chromium is needed for the page test under CI"; rc=1
else
  echo "page test skipped: no chromium"
fi
stop $MAIN_PID "$TMP/server.log"

# An API key: requests without it, or with a wrong one, get 401; with it, 200. One request at a time and one
# waiting: more at once get 503 with Retry-After.
start keyed "$TMP/keyed.log" --api-key sekrit-key --parallel 1 --queue 1
export BASE="http://127.0.0.1:$PORT" API_KEY=sekrit-key
node "$NODE_DIR/api_key.mjs" || rc=1
stop $PID "$TMP/keyed.log"

if [ $rc -ne 0 ]; then echo "server log:"; tail -40 "$TMP/server.log"; fi
exit $rc
