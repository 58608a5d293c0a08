#!/usr/bin/env bash
# cli_commands.sh — the gemma4c command end to end: what every command prints and writes (answers, timings,
# token counts, files and their tensors, batch result lines), and one clear error line for bad input.
set -u
export LC_ALL=C # patterns match bytes: a random model's answers need not be text in any locale
BIN="$1"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
GOLDEN="${GEMMA4C_GOLDEN:-$ROOT/../shared/golden}"
TINY="$GOLDEN/tiny/checkpoint"
MEDIA="$GOLDEN/media"
if [ ! -d "$TINY" ]; then
  if [ "${CI:-}" = "true" ]; then echo "golden data not found under CI"; exit 1; fi
  echo "SKIPPED: golden data not found"; exit 77
fi
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
pass=0; fail=0; unchecked=""

failed() { unchecked=""; fail=$((fail+1)); echo "FAIL: $*"; }
checked() { unchecked=""; pass=$((pass+1)); }
# Every successful case must be followed by checks of what it printed or wrote, not only its exit status.
want_checks() { if [ -n "$unchecked" ]; then failed "$unchecked: no check of its output"; unchecked=""; fi; }

ok() { # name, command...: must exit 0; stdout in $TMP/out, stderr in $TMP/err, for the checks that follow
  want_checks
  local name="$1"; shift
  if "$@" >"$TMP/out" 2>"$TMP/err"; then unchecked="$name"; else failed "$name (exit $?)"; cat "$TMP/err"; fi
}
bad() { # name, expected text in the error, command...: must fail with one stderr line containing it, no stdout
  want_checks
  local name="$1" want="$2"; shift 2
  "$@" >"$TMP/out" 2>"$TMP/err"; local rc=$?
  local lines; lines=$(wc -l <"$TMP/err")
  if [ $rc -ne 0 ] && [ "$lines" -eq 1 ] && grep -q -- "$want" "$TMP/err" && grep -q "^gemma4c: error: " "$TMP/err" &&
     [ ! -s "$TMP/out" ]; then
    checked
  else
    failed "$name (exit $rc, $lines stderr lines, $(wc -c <"$TMP/out") stdout bytes, wanted '$want'):"; cat "$TMP/err"
  fi
}
has() { # name, file, extended regex: some line matches
  if grep -Eq -- "$3" "$2"; then checked; else failed "$1: /$3/ not in $2"; head -c 2000 "$2"; echo; fi
}
lacks() { # name, file, extended regex: no line matches
  if ! grep -Eq -- "$3" "$2"; then checked; else failed "$1: /$3/ in $2"; grep -E -- "$3" "$2" | head -3; fi
}
count() { # name, file, extended regex, n: exactly n lines match
  local n; n=$(grep -Ec -- "$3" "$2")
  if [ "$n" -eq "$4" ]; then checked; else failed "$1: $n lines of $2 match /$3/, wanted $4"; fi
}
same() { # name, file, file: identical contents
  if cmp -s "$2" "$3"; then checked; else failed "$1: $2 and $3 differ"; diff <(od -c "$2") <(od -c "$3") | head -6; fi
}
nonempty() { # name, file
  if [ -s "$2" ]; then checked; else failed "$1: $2 is empty or missing"; fi
}
line() { # name, file, line number, extended regex: that line matches
  if sed -n "$3p" "$2" | grep -Eq -- "$4"; then checked
  else failed "$1: line $3 of $2 does not match /$4/"; sed -n "$3p" "$2"; fi
}

# safetensors: an 8-byte little-endian header length, the JSON header, then the data.
st_header() { local n; n=$(od -An -t u8 -N8 "$1" | tr -d ' '); head -c $((8 + n)) "$1" | tail -c "$n" | tr -d ' \n'; }
st_tensors() { # file: "name DTYPE [shape]" per tensor, sorted by name
  st_header "$1" | grep -o '"[A-Za-z0-9_.]*":{"[^}]*}' | grep -v '^"__metadata__"' | while read -r entry; do
    echo "$(echo "$entry" | cut -d'"' -f2) $(echo "$entry" | grep -o '"dtype":"[A-Z0-9]*"' | cut -d'"' -f4)" \
         "$(echo "$entry" | grep -o '"shape":\[[0-9,]*\]' | cut -d: -f2)"
  done | sort
}
st_end() { # file: where the data ends (the largest data offset)
  st_header "$1" | grep -o '"data_offsets":\[[0-9]*,[0-9]*\]' | grep -o '[0-9]*\]' | tr -d ']' | sort -n | tail -1
}
tensors() { # name, file, the expected st_tensors lines: names, dtypes and shapes, and a file of exactly that size
  local got n end size
  got="$(st_tensors "$2" 2>/dev/null)"; n=$(od -An -t u8 -N8 "$2" 2>/dev/null | tr -d ' ')
  end=$(st_end "$2" 2>/dev/null); size=$(stat -c %s "$2" 2>/dev/null)
  if [ "$got" = "$3" ] && [ "${size:-0}" -eq $((8 + ${n:-0} + ${end:-0})) ]; then checked
  else failed "$1: $2 holds"; echo "$got"; echo "wanted"; echo "$3"; fi
}
st_i32() { # file, tensor: its first int32 value
  local n off; n=$(od -An -t u8 -N8 "$1" | tr -d ' ')
  off=$(st_header "$1" | grep -o "\"$2\":{[^}]*}" | grep -o '"data_offsets":\[[0-9]*' | grep -o '[0-9]*$')
  [ -n "$off" ] && od -An -t d4 -j $((8 + n + off)) -N4 "$1" | tr -d ' '
}
value() { # name, file, tensor, expected int32
  local v; v=$(st_i32 "$2" "$3")
  if [ "$v" = "$4" ]; then checked; else failed "$1: $3 is '$v', wanted $4"; fi
}

# The -v report line: "[prompt P tokens (R reused) in ..., time to first token T s, G tokens generated at ...]".
REPORT='^\[prompt [0-9]+ tokens \([0-9]+ reused\) in [0-9.]+ s \([0-9.]+ tok/s\)(, media)?, '
REPORT+='time to first token [0-9.]+ s, [0-9]+ tokens generated at [0-9.]+ tok/s\]$'

# ---- version and help ------------------------------------------------------------------------------------------
version=$(sed -n 's/^#define GEMMA4C_VERSION_STRING "\(.*\)"$/\1/p' "$ROOT/include/gemma4c.h")
ok "--version" "$BIN" --version
has "--version names the header's version" "$TMP/out" "^gemma4c $version\$"
count "--version is one line" "$TMP/out" "" 1
ok "--help" "$BIN" --help
has "help: usage" "$TMP/out" "^usage: gemma4c <command>"
for c in run chat batch logits convert features bench; do has "help lists $c" "$TMP/out" "^  $c "; done
ok "run --help" "$BIN" run --help
has "run --help prints the usage" "$TMP/out" "^usage: gemma4c"

# ---- run ---------------------------------------------------------------------------------------------------------
# The quick start: no model at all.
ok "run without a model" "$BIN" run -n 12 --seed 1
has "synthetic model is labelled" "$TMP/err" "RANDOM weights"
has "the quick-start prompt is shown" "$TMP/err" "^> Write a haiku about the sea\.$"
nonempty "the quick start answers" "$TMP/out"
ok "run tiny checkpoint" "$BIN" run -m "$TINY" -p "Hello" -n 8 -v
has "timings with -v" "$TMP/err" "$REPORT"
has "tokens of the chat prompt, at most -n generated" "$TMP/err" \
  "^\[prompt 21 tokens \(0 reused\).* [1-8] tokens generated"
has "byte-level tokenizer noted with -v" "$TMP/err" "no tokenizer.json: using a byte-level tokenizer"
ok "greedy raw prompt" "$BIN" run -m "$TINY" -p "Hello" --raw --greedy -n 4 -v
cp "$TMP/out" "$TMP/greedy1"
has "raw prompt: <bos> and 5 bytes" "$TMP/err" "^\[prompt 6 tokens \(0 reused\)"
ok "greedy raw prompt again" "$BIN" run -m "$TINY" -p "Hello" --raw --greedy -n 4
same "greedy decoding is deterministic" "$TMP/out" "$TMP/greedy1"
SAMPLING=(-n 6 --temp 0.7 --top-k 20 --top-p 0.9 --min-p 0.05 --repeat-penalty 1.1 --seed 3 -v)
ok "prompt from stdin" bash -c "echo 'Hi there' | '$BIN' run -m '$TINY' -p - ${SAMPLING[*]}"
cp "$TMP/out" "$TMP/stdin.out"; cp "$TMP/err" "$TMP/stdin.err"
has "stdin prompt (trimmed by the template)" "$TMP/stdin.err" "^\[prompt 24 tokens \(0 reused\)"
ok "the same prompt as -p, same seed" "$BIN" run -m "$TINY" -p "Hi there" "${SAMPLING[@]}"
same "a seed gives the same sampled answer" "$TMP/out" "$TMP/stdin.out"
# --stop at the first letter or digit of the greedy answer: the answer up to it, the stop string left out
stop=$(tr -cd 'A-Za-z0-9' <"$TMP/greedy1" | head -c 1)
ok "stop string" "$BIN" run -m "$TINY" -p "Hello" --raw --greedy -n 4 --stop "${stop:-@}"
answer=$(cat "$TMP/greedy1")
printf '%s\n' "${answer%%"${stop:-@}"*}" >"$TMP/until_stop"
same "the answer ends before the stop string" "$TMP/out" "$TMP/until_stop"
# --json-object: the answer opens an object even where the model would not (test_json_mode checks the rest)
ok "JSON mode" "$BIN" run -m "$TINY" -p "Hello" --raw --greedy -n 8 --json-object
line "JSON mode: the answer opens an object" "$TMP/out" 1 '^\{'
lacks "without it the greedy answer does not" "$TMP/greedy1" '^\{'
# --json-schema: an instance of the schema (test_json_schema checks the rest); refusals in one line
printf '{"type":"object","properties":{"ok":{"type":"boolean"},"n":{"enum":[1,2]}},"required":["ok","n"]}' >"$TMP/schema.json"
ok "structured output" "$BIN" run -m "$TINY" -p "Hello" --raw --greedy -n 1000 --json-schema "$TMP/schema.json"
{ tr -d ' \t\r\n' <"$TMP/out"; echo; } >"$TMP/flat" # the model may put whitespace between the tokens
has "structured output: the schema's instance" "$TMP/flat" '^\{"ok":(true|false),"n":[12]\}$'
printf '{"properties":{"a":{"type":"array","contains":{"const":1}}}}' >"$TMP/unenforced.json"
bad "a schema keyword that cannot be enforced" "does not enforce the keyword contains" \
  "$BIN" run -m "$TINY" -p "Hello" --json-schema "$TMP/unenforced.json"
bad "a missing schema file" "cannot open the JSON schema" "$BIN" run -m "$TINY" -p "Hello" --json-schema "$TMP/nope.json"

# ---- media in run and chat -----------------------------------------------------------------------------------
ok "image and audio in a prompt" "$BIN" run -m "$TINY" -p "What is this?" --image "$MEDIA/small.png" \
  --audio "$MEDIA/speech_16k.wav" -n 4 --greedy -v
has "image + audio: 260 + 170 soft tokens" "$TMP/err" "^\[media: 430 soft tokens in [0-9.]+ s\]$"
has "media prompt: text + soft tokens + markers" "$TMP/err" "^\[prompt 463 tokens \(0 reused\).*, media, "
ok "video in a prompt" "$BIN" run -m "$TINY" -p "What happens?" --video "$MEDIA/clip.mp4" -n 3 --greedy -v
has "video: 32 frames x 63 soft tokens" "$TMP/err" "^\[media: 2016 soft tokens in [0-9.]+ s\]$"
ok "chat with media" bash -c "printf 'Describe it.\nAnd again?\n/exit\n' | '$BIN' chat -m '$TINY' \
  --image '$MEDIA/small.png' --audio '$MEDIA/speech_16k.wav' -n 4 --greedy -v"
count "chat with media: two turns" "$TMP/err" "$REPORT" 2
count "media encoded once, for the first turn" "$TMP/err" "^\[media: 430 soft tokens" 1
has "the second turn reuses the first" "$TMP/err" "^\[prompt [0-9]+ tokens \([1-9][0-9][0-9] reused\)"

# ---- chat --------------------------------------------------------------------------------------------------------
ok "chat, several turns" bash -c "printf 'Hi\nTell me more\n/reset\nAgain\n/exit\n' | '$BIN' chat -m '$TINY' -n 6 \
  --think --greedy -v"
count "three turns answered" "$TMP/err" "$REPORT" 3
has "/reset says so" "$TMP/err" "^\(conversation cleared\)$"
count "the first turn and the one after /reset start from nothing" "$TMP/err" "\(0 reused\)" 2
has "--think shows control tokens" "$TMP/out" "<id_[0-9]+>"

# Slash commands: /image, /save, an unknown command, /reset, /load, /exit. The answers of this one chat must be
# those of fresh chats: the first turn alone, the turn after /load alone (twice: after /save it continued the
# same state), and "Hi" alone (after /reset).
chat() { printf '%b' "$1" | "$BIN" chat -m "$TINY" -n 4 --greedy -v; }
ok "chat slash commands" chat "/image $MEDIA/small.png\nWhat is this?\n/save $TMP/conv\nAnd now?\n\
/image $TMP/nothing.png\n/bogus\n/load $TMP/nothing\n/reset\nHi\n/load $TMP/conv\nAnd now?\n/exit\nNever answered\n"
cp "$TMP/out" "$TMP/slash.out"; cp "$TMP/err" "$TMP/slash.err"
has "/image attaches" "$TMP/slash.err" "^\(.*small\.png attached to the next message\)$"
has "the image went with the next message" "$TMP/slash.err" "^\[media: 260 soft tokens"
has "/save says so" "$TMP/slash.err" "^\(saved to $TMP/conv\)$"
has "/image of a missing file: an error line" "$TMP/slash.err" "^gemma4c: error: .*nothing\.png: cannot read this file$"
has "unknown /command: an error line" "$TMP/slash.err" "^gemma4c: error: unknown command /bogus "
has "/load of a missing file: an error line" "$TMP/slash.err" "^gemma4c: error: .*nothing\.json: cannot open"
has "/reset says so" "$TMP/slash.err" "^\(conversation cleared\)$"
has "/load says so" "$TMP/slash.err" "^\(loaded $TMP/conv\)$"
count "four turns; nothing after /exit" "$TMP/slash.err" "$REPORT" 4
count "three error lines" "$TMP/slash.err" "^gemma4c: error: " 3
nonempty "/save writes the session" "$TMP/conv"
has "/save writes the conversation beside it" "$TMP/conv.json" '"text":[[:space:]]*"What is this\?"'
has "... with its media" "$TMP/conv.json" "\"path\":[[:space:]]*\"$MEDIA/small\.png\""
# The turn after /load reuses the saved state (the same counts as the turn that followed /save).
sed -n '/^(loaded/,$p' "$TMP/slash.err" | grep -E "$REPORT" >"$TMP/after_load"
has "the turn after /load reuses tokens" "$TMP/after_load" "\([1-9][0-9]* reused\)"
grep -E "$REPORT" "$TMP/slash.err" | sed -n 2p | sed -E 's/ in [0-9.]+ s.*//' >"$TMP/after_save"
sed -i -E 's/ in [0-9.]+ s.*//' "$TMP/after_load"
same "... as many as the turn after /save" "$TMP/after_load" "$TMP/after_save"
chat "/image $MEDIA/small.png\nWhat is this?\n" >"$TMP/first" 2>/dev/null
chat "/load $TMP/conv\nAnd now?\n" >"$TMP/loaded" 2>"$TMP/loaded.err"
has "a fresh chat after /load reuses the saved tokens" "$TMP/loaded.err" "\([1-9][0-9]* reused\)"
chat "Hi\n" >"$TMP/hi" 2>/dev/null
cat "$TMP/first" "$TMP/loaded" "$TMP/hi" "$TMP/loaded" >"$TMP/expected"
same "answers after /save, /reset and /load are those of fresh chats" "$TMP/slash.out" "$TMP/expected"
head -c 100 "$TMP/conv" >"$TMP/cut"; cp "$TMP/conv.json" "$TMP/cut.json"
ok "chat: /load of a truncated state" chat "/load $TMP/cut\nHi\n"
has "a truncated state: one error line" "$TMP/err" "^gemma4c: error: .*/cut: truncated or corrupt$"
count "... and the chat goes on" "$TMP/err" "$REPORT" 1

# ---- batch -------------------------------------------------------------------------------------------------------
long=$(head -c 80 /dev/zero | tr '\0' 'x')
# One request a line; a line ending in a backslash goes on on the next (the here-document joins them).
U='"method":"POST","url":"/v1/chat/completions"'
cat >"$TMP/requests.jsonl" <<EOF
{"custom_id":"story",$U,"body":{"messages":[{"role":"user","content":"Tell me a story"}],\
"max_tokens":24,"temperature":0}}
{"custom_id":"hello","url":"/v1/chat/completions","body":{"model":"tiny","messages":[{"role":"system",\
"content":"Be brief."},{"role":"user","content":"Hello"}],"max_tokens":3,"temperature":0,"logprobs":true,\
"top_logprobs":2}}
this line is not JSON
{"custom_id":"wrong-url","method":"POST","url":"/v1/embeddings","body":{"input":"x"}}
{"custom_id":"hot",$U,"body":{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}}
{"custom_id":"two",$U,"body":{"messages":[{"role":"user","content":"x"}],"n":2}}

{"custom_id":"sampled",$U,"body":{"messages":[{"role":"user","content":"Why?"}],"max_tokens":5,\
"temperature":0.8,"seed":7,"stop":["zzz"]}}
{"custom_id":"too-long",$U,"body":{"messages":[{"role":"user","content":"$long"}]}}
{"url":"/v1/chat/completions","body":{"messages":[{"role":"user","content":"x"}]}}
{"custom_id":"last",$U,"body":{"messages":[{"role":"user","content":"Bye"}],"max_tokens":2,"temperature":0}}
EOF
ok "batch, 3 at once" "$BIN" batch -m "$TINY" -i "$TMP/requests.jsonl" -c 64 --parallel 3 -v
B="$TMP/batch3.jsonl"
cp "$TMP/out" "$B"
count "one result line per request line (the blank one skipped)" "$B" "" 10
for i in 0 1 2 3 4 5 6 7 8 9; do line "results in input order ($i)" "$B" $((i + 1)) "^\{\"id\":\"batch_req_$i\","; done
i=0
for id in story hello null wrong-url hot two sampled too-long null last; do
  i=$((i + 1))
  [ "$id" = null ] && want='"custom_id":null' || want="\"custom_id\":\"$id\""
  line "custom_id of line $i" "$B" $i "^\{\"id\":\"batch_req_[0-9]+\",$want,"
done
OK200='"response":\{"status_code":200,"request_id":"batch_req_[0-9]+",'
OK200+='"body":\{"id":"chatcmpl-[0-9]+","object":"chat.completion",'
for i in 1 2 7 10; do
  line "status 200 (line $i)" "$B" $i "$OK200"
  line "no error (line $i)" "$B" $i '"error":null\}$'
done
# usage: the chat prompt is 16 tokens of template around the message's bytes (byte-level tokenizer)
usage() { # prompt tokens, completion tokens: the end of a choice stopped by max_tokens, and the usage
  echo "\"finish_reason\":\"length\"\}\],\"usage\":\{\"prompt_tokens\":$1,\"completion_tokens\":$2,\
\"total_tokens\":$(($1 + $2)),\"prompt_tokens_details\":\{\"cached_tokens\":0\}\}"
}
line "story: 24 tokens, length" "$B" 1 "$(usage 31 24)"
line "hello: system message, 3 tokens" "$B" 2 "$(usage 40 3)"
ALT='\{[^]]*\]\}' # {"token", "logprob", "bytes": [...]}
line "hello: logprobs with 2 alternatives" "$B" 2 \
  "\"logprobs\":\{\"content\":\[\{\"token\":\"[^\"]*\",\"logprob\":-[0-9.]+,\"bytes\":\[[0-9,]+\],\
\"top_logprobs\":\[$ALT,$ALT\]\},"
count "hello: 3 tokens with logprobs" <(sed -n 2p "$B" | grep -o '"top_logprobs":\[') "" 3
line "story: no logprobs asked" "$B" 1 '"logprobs":null'
line "sampled: 5 tokens, length" "$B" 7 "$(usage 20 5)"
line "not JSON" "$B" 3 '"response":null,"error":\{"code":"invalid_json","message":"[^"]+"\}\}$'
line "wrong url" "$B" 4 '"response":null,"error":\{"code":"invalid_url","message":"[^"]*/v1/chat/completions[^"]*"\}\}$'
line "temperature \"hot\": 400 naming the field" "$B" 5 "\"status_code\":400,.*\"body\":\{\"error\":\{\"message\":\
\"'temperature' must be a number\",\"type\":\"invalid_request_error\",\"param\":\"temperature\",\"code\":null\}\}\},\
\"error\":null\}$"
line "n=2: 400 naming the field" "$B" 6 '"status_code":400,.*"param":"n",'
line "a prompt over the context: 400" "$B" 8 \
  '"status_code":400,.*"message":"[^"]*context[^"]*",.*"code":"context_length_exceeded"'
line "no custom_id" "$B" 9 \
  '"custom_id":null,"response":null,"error":\{"code":"invalid_request","message":"[^"]*custom_id[^"]*"\}'
has "batch -v: a summary" "$TMP/err" "^\[10 requests: [0-9]+ prompt tokens computed, [0-9]+ generated in [0-9]+ steps"
ok "batch, one at a time, to a file" "$BIN" batch -m "$TINY" -i "$TMP/requests.jsonl" -c 64 --parallel 1 \
  -o "$TMP/batch1.jsonl"
count "batch -o: nothing on stdout" "$TMP/out" "" 0
# One session serves every request in turn, so later prompts reuse its tokens; everything else is as with 3.
has "one session: a later request reuses the template's first tokens" "$TMP/batch1.jsonl" \
  '"custom_id":"hello",.*"cached_tokens":[1-9]'
normalize() { sed -E 's/"created":[0-9]+/"created":0/; s/"cached_tokens":[0-9]+/"cached_tokens":0/' "$1"; }
normalize "$B" >"$TMP/n3"; normalize "$TMP/batch1.jsonl" >"$TMP/n1"
same "--parallel 1 and 3: the same results (greedy and seeded)" "$TMP/n1" "$TMP/n3"
ok "batch from standard input" bash -c "grep '\"last\"' '$TMP/requests.jsonl' | '$BIN' batch -m '$TINY' -i -"
line "stdin: the one result" "$TMP/out" 1 '^\{"id":"batch_req_0","custom_id":"last","response":\{"status_code":200,'
# logit_bias: +100 on id 310 (238 + 'H': the tiny model's byte-level ids) makes every token an H; an id past the
# vocabulary is a 400 naming the field
cat >"$TMP/bias.jsonl" <<EOF
{"custom_id":"forced",$U,"body":{"messages":[{"role":"user","content":"Hi"}],"max_tokens":3,"temperature":0,\
"logit_bias":{"310":100}}}
{"custom_id":"unknown-id",$U,"body":{"messages":[{"role":"user","content":"Hi"}],"logit_bias":{"99999999":1}}}
EOF
ok "batch with logit_bias" "$BIN" batch -m "$TINY" -i "$TMP/bias.jsonl" -c 64
line "logit_bias +100 forces its token" "$TMP/out" 1 '"message":\{"role":"assistant","content":"HHH"'
line "logit_bias with an id past the vocabulary: 400" "$TMP/out" 2 '"status_code":400,.*"param":"logit_bias",'
bad "batch needs -i" "-i" "$BIN" batch -m "$TINY"
bad "batch input missing" "$TMP/none.jsonl" "$BIN" batch -m "$TINY" -i "$TMP/none.jsonl"
bad "batch --parallel 0" "--parallel" "$BIN" batch -m "$TINY" -i "$TMP/requests.jsonl" --parallel 0
bad "batch takes one --parallel" "one number" "$BIN" batch -m "$TINY" -i "$TMP/requests.jsonl" --parallel 1,2

# ---- logits and features ------------------------------------------------------------------------------------------
ok "logits" "$BIN" logits -m "$TINY" --ids 2,105,300,107 --out "$TMP/logits.safetensors"
tensors "logits [T, vocab]" "$TMP/logits.safetensors" "logits F32 [4,512]"
# 500 <|image>, 502 the image placeholder, 501 <image|>, 506 the audio placeholder (the tiny config's ids)
ok "logits, placeholder ids without media" "$BIN" logits -m "$TINY" --ids 2,105,500,502,502,502,501,506,300 \
  --out "$TMP/placeholders.safetensors"
tensors "placeholder ids are embedded like the reference's" "$TMP/placeholders.safetensors" "logits F32 [9,512]"
ids="2,105,500$(printf ',502%.0s' $(seq 260)),501,300"
ok "logits, a placeholder run the image fills" "$BIN" logits -m "$TINY" --ids "$ids" --image "$MEDIA/small.png" \
  --out "$TMP/image.safetensors"
tensors "logits with an image" "$TMP/image.safetensors" "logits F32 [265,512]"
bad "a placeholder run shorter than the image" "260 soft tokens" "$BIN" logits -m "$TINY" \
  --ids 2,105,500,502,502,502,501,300 --image "$MEDIA/small.png" --out "$TMP/x.safetensors"
bad "an image placeholder run given audio" "no image input left" "$BIN" logits -m "$TINY" \
  --ids 2,105,502,502,502 --audio "$MEDIA/speech_16k.wav" --out "$TMP/x.safetensors"
bad "media without placeholders" "placeholder" "$BIN" logits -m "$TINY" --ids 2,105,300 --image "$MEDIA/small.png" \
  --out "$TMP/x.safetensors"

ok "image features" "$BIN" features -m "$TINY" --image "$MEDIA/small.png" --out "$TMP/img.safetensors"
tensors "image tensors (golden vision_small)" "$TMP/img.safetensors" "image_features F32 [260,64]
image_position_ids I32 [2520,2]
num_soft_tokens I32 [1]
pixel_values_u8 U8 [2520,768]"
value "small.png: 260 soft tokens" "$TMP/img.safetensors" num_soft_tokens 260
ok "image features, 70-token budget" "$BIN" features -m "$TINY" --image "$MEDIA/chelsea.png" --max-soft-tokens 70 \
  --out "$TMP/img70.safetensors"
tensors "image tensors (golden vision_photo70)" "$TMP/img70.safetensors" "image_features F32 [60,64]
image_position_ids I32 [630,2]
num_soft_tokens I32 [1]
pixel_values_u8 U8 [630,768]"
ok "audio features" "$BIN" features -m "$TINY" --audio "$MEDIA/speech_16k.wav" --out "$TMP/aud.safetensors"
tensors "audio tensors (golden audio_speech)" "$TMP/aud.safetensors" "audio_features F32 [170,64]
input_features F32 [678,128]
input_features_mask BOOL [678]"
ok "video features" "$BIN" features -m "$TINY" --video "$MEDIA/clip.mp4" --out "$TMP/vid.safetensors"
tensors "video tensors (golden video)" "$TMP/vid.safetensors" "num_frames I32 [1]
num_soft_tokens_per_frame I32 [1]
video_features F32 [2016,64]"
value "video: 32 frames" "$TMP/vid.safetensors" num_frames 32
value "video: 63 soft tokens a frame" "$TMP/vid.safetensors" num_soft_tokens_per_frame 63
bad "features of two media" "exactly one" "$BIN" features -m "$TINY" --image "$MEDIA/small.png" \
  --audio "$MEDIA/speech_16k.wav" --out "$TMP/x.safetensors"

# A repo id found in the Hugging Face cache: the same model as the directory.
mkdir -p "$TMP/hf/hub/models--google--tiny-gemma/refs" "$TMP/hf/hub/models--google--tiny-gemma/snapshots/abc123"
echo abc123 >"$TMP/hf/hub/models--google--tiny-gemma/refs/main"
for f in "$TINY"/*; do ln -s "$f" "$TMP/hf/hub/models--google--tiny-gemma/snapshots/abc123/"; done
ok "repo id from the cache" env HF_HOME="$TMP/hf" "$BIN" run -m google/tiny-gemma -p Hello --raw --greedy -n 4
same "the cached repo answers as its directory" "$TMP/out" "$TMP/greedy1"
bad "repo id not in the cache" "hf download" env HF_HOME="$TMP/hf" "$BIN" run -m google/other -p hi

# ---- convert: what the 4-bit rounding is calibrated on -----------------------------------------------------------
differ() { # name, file, file: both exist and differ
  if [ -s "$2" ] && [ -s "$3" ] && ! cmp -s "$2" "$3"; then checked; else failed "$1: $2 and $3 are the same or missing"; fi
}
CALIB="$ROOT/src/model/calibration.txt"
ok "convert q4" "$BIN" convert "$TINY" -o "$TMP/c_builtin.gguf" --quant q4 -t 2
nonempty "convert q4 writes the file" "$TMP/c_builtin.gguf"
ok "convert, calibration text" "$BIN" convert "$TINY" -o "$TMP/c_text.gguf" --quant q4 -t 2 --calibration "$CALIB"
same "the built-in text is calibration.txt" "$TMP/c_text.gguf" "$TMP/c_builtin.gguf"
head -c 1500 "$CALIB" >"$TMP/part.txt"
ok "convert, another text" "$BIN" convert "$TINY" -o "$TMP/c_part.gguf" --quant q4 -t 2 --calibration "$TMP/part.txt"
differ "another text rounds otherwise" "$TMP/c_part.gguf" "$TMP/c_builtin.gguf"
ok "convert, no calibration" "$BIN" convert "$TINY" -o "$TMP/c_none.gguf" --quant q4-mix -t 2 --calibration none
nonempty "convert without calibration writes the file" "$TMP/c_none.gguf"
ok "convert q4-mix" "$BIN" convert "$TINY" -o "$TMP/c_mix.gguf" --quant q4-mix -t 2
differ "no calibration rounds otherwise" "$TMP/c_none.gguf" "$TMP/c_mix.gguf"
ok "a file converted without calibration answers" "$BIN" run -m "$TMP/c_none.gguf" -p Hello --greedy -n 3
nonempty "an answer" "$TMP/out"
ok "convert q6" "$BIN" convert "$TINY" -o "$TMP/c_q6.gguf" --quant q6 -t 2
nonempty "convert q6 writes the file" "$TMP/c_q6.gguf"
ok "convert q6, no calibration" "$BIN" convert "$TINY" -o "$TMP/c_q6none.gguf" --quant q6 -t 2 --calibration none
differ "q6 calibrates its 6-bit rounding" "$TMP/c_q6none.gguf" "$TMP/c_q6.gguf"
ok "a q6 file answers" "$BIN" run -m "$TMP/c_q6.gguf" -p Hello --greedy -n 3
nonempty "an answer" "$TMP/out"
# The trained checkpoint ships no tokenizer.json: the built-in text goes in as byte-fallback ids (238 + byte), and
# its own bytes are 3 + byte. Ids given on the command line take the text's place, separated by commas or spaces.
TRAINED="$GOLDEN/trained/checkpoint"
od -An -v -tu1 "$CALIB" | awk '{for (i = 1; i <= NF; i++) printf "%d%s", $i + 238, (NR * i) % 7 ? "," : "\n"}' \
  >"$TMP/ids238.txt"
od -An -v -tu1 "$CALIB" | awk '{for (i = 1; i <= NF; i++) printf "%d ", $i + 3}' >"$TMP/ids3.txt"
ok "convert trained" "$BIN" convert "$TRAINED" -o "$TMP/t_builtin.gguf" --quant q4 -t 2
nonempty "convert trained writes the file" "$TMP/t_builtin.gguf"
ok "convert trained, the fallback's ids" "$BIN" convert "$TRAINED" -o "$TMP/t_238.gguf" --quant q4 -t 2 \
  --calibration-ids "$TMP/ids238.txt"
same "ids equal to the text's tokens round the same" "$TMP/t_238.gguf" "$TMP/t_builtin.gguf"
ok "convert trained, its own byte ids" "$BIN" convert "$TRAINED" -o "$TMP/t_3.gguf" --quant q4 -t 2 \
  --calibration-ids "$TMP/ids3.txt"
differ "other ids round otherwise" "$TMP/t_3.gguf" "$TMP/t_builtin.gguf"
printf '2 3 999999' >"$TMP/ids_big.txt"
bad "calibration id outside the vocabulary" "calibration: token id 999999" \
  "$BIN" convert "$TINY" -o "$TMP/x.gguf" --quant q4 --calibration-ids "$TMP/ids_big.txt"
printf '2, 3, -4' >"$TMP/ids_neg.txt"
bad "negative calibration id" "token id 3 is not a non-negative integer" \
  "$BIN" convert "$TINY" -o "$TMP/x.gguf" --calibration-ids "$TMP/ids_neg.txt"
printf '2 3x' >"$TMP/ids_junk.txt"
bad "malformed calibration id" "token id 2 is not" "$BIN" convert "$TINY" -o "$TMP/x.gguf" --calibration-ids "$TMP/ids_junk.txt"
printf '2 3\0004' >"$TMP/ids_nul.txt"
bad "NUL among calibration ids" "a NUL byte" "$BIN" convert "$TINY" -o "$TMP/x.gguf" --calibration-ids "$TMP/ids_nul.txt"
printf ' ,\n' >"$TMP/ids_none.txt"
bad "no calibration ids" "no token ids" "$BIN" convert "$TINY" -o "$TMP/x.gguf" --calibration-ids "$TMP/ids_none.txt"
: >"$TMP/empty.txt"
bad "empty calibration text" "calibration text is empty" "$BIN" convert "$TINY" -o "$TMP/x.gguf" --calibration "$TMP/empty.txt"
bad "missing calibration file" "cannot open the calibration file" \
  "$BIN" convert "$TINY" -o "$TMP/x.gguf" --calibration "$TMP/nothing.txt"
head -c 1100000 /dev/zero | tr '\0' 'a' >"$TMP/huge.txt"
bad "calibration text over 1 MiB" "at most 1 MiB" "$BIN" convert "$TINY" -o "$TMP/x.gguf" --calibration "$TMP/huge.txt"
bad "text and ids" "not both" "$BIN" convert "$TINY" -o "$TMP/x.gguf" --calibration "$CALIB" --calibration-ids "$TMP/ids3.txt"
bad "q8 does not calibrate" "only q4, q4-mix and q6 calibrate, not q8" \
  "$BIN" convert "$TINY" -o "$TMP/x.gguf" --quant q8 --calibration none
[ ! -e "$TMP/x.gguf" ] && checked || failed "a refused conversion left $TMP/x.gguf"

# ---- bad input: one line, non-zero exit --------------------------------------------------------------------------
bad "no such model" "no such model" "$BIN" run -m "$TMP/nowhere" -p hi
mkdir -p "$TMP/empty"
bad "directory without config" "config.json" "$BIN" run -m "$TMP/empty" -p hi
bad "unknown option" "unknown option" "$BIN" run --bogus
bad "unknown command" "unknown command" "$BIN" fly
bad "bad number" "integer" "$BIN" run -m "$TINY" -p hi -n many
bad "missing value" "needs a value" "$BIN" run -m "$TINY" -p
bad "run needs a prompt" "prompt" "$BIN" run -m "$TINY"
bad "temperature range" "number" "$BIN" run -m "$TINY" -p hi --temp -1
# options a command does not take are refused, naming the option
bad "logits does not think" "logits does not take --think" "$BIN" logits -m "$TINY" --ids 2 --out "$TMP/x" --think
bad "convert takes no media" "convert does not take --image" "$BIN" convert X -o "$TMP/x.gguf" --image y
bad "run takes no ids" "run does not take --ids" "$BIN" run -m "$TINY" -p hi --ids 2
bad "batch has no --greedy" "batch does not take --greedy" "$BIN" batch -m "$TINY" -i "$TMP/requests.jsonl" --greedy
bad "features has no --seed" "features does not take --seed" "$BIN" features -m "$TINY" --seed 1
bad "bench has no --stop" "bench does not take --stop" "$BIN" bench --stop x
bad "not a video" "speech_16k.wav" "$BIN" run -m "$TINY" -p hi --video "$MEDIA/speech_16k.wav"
bad "not an image" "$MEDIA/speech_16k.wav" "$BIN" run -m "$TINY" -p hi --image "$MEDIA/speech_16k.wav"
bad "not audio" "coffee.jpg" "$BIN" run -m "$TINY" -p hi --audio "$MEDIA/coffee.jpg"
bad "missing image" "nothing.png" "$BIN" run -m "$TINY" -p hi --image "$TMP/nothing.png"
bad "bad budget" "max-soft-tokens" "$BIN" features -m "$TINY" --image "$MEDIA/small.png" --max-soft-tokens 100 \
  --out "$TMP/x.safetensors"
bad "missing gguf" "no such file" "$BIN" run -m "$TMP/model.gguf" -p hi
bad "unknown token id" "outside the vocabulary" "$BIN" logits -m "$TINY" --ids 2,99999 --out "$TMP/x.safetensors"
bad "malformed ids" "not a token id" "$BIN" logits -m "$TINY" --ids 2,abc --out "$TMP/x.safetensors"
bad "trailing comma" "trailing comma" "$BIN" logits -m "$TINY" --ids 2,3, --out "$TMP/x.safetensors"
bad "logits needs --out" "--out" "$BIN" logits -m "$TINY" --ids 2,3
long=$(head -c 3000 /dev/zero | tr '\0' 'a')
bad "prompt longer than the context" "context" "$BIN" run -m "$TINY" -p "$long" -c 64
bad "ids longer than the model's context" "context" "$BIN" logits -m "$TINY" \
  --ids "$(seq -s, 1 5000 | sed 's/[0-9]*/2/g')" --out "$TMP/x.safetensors"
bad "unwritable output" "$TMP/no/dir" "$BIN" logits -m "$TINY" --ids 2,3 --out "$TMP/no/dir/x.safetensors"

# ---- bench -------------------------------------------------------------------------------------------------------
# On a given checkpoint: the text figures, the one-line JSON, and each encoder's time per input.
ok "bench with media" "$BIN" bench -m "$TINY" --no-bandwidth --image "$MEDIA/small.png" \
  --video "$MEDIA/clip.mp4" --audio "$MEDIA/speech_16k.wav"
has "bench prefill" "$TMP/out" "^prefill          512 tokens in [0-9.]+ s: [0-9.]+ tok/s$"
has "bench peak RSS" "$TMP/out" "^peak RSS         [0-9.]+ GB$"
has "bench image" "$TMP/out" "small.png: 260 soft tokens"
has "bench video per second" "$TMP/out" "clip.mp4 \(8.0 s\): 2016 soft tokens in .* s per second of video"
has "bench audio real-time factor" "$TMP/out" "speech_16k.wav \([0-9.]+ s\): 170 soft tokens in .*real-time factor"
ok "bench json" "$BIN" bench -m "$TINY" --no-bandwidth --json
has "bench json keys" "$TMP/out" "^\{\"prefill_tok_s\":[0-9.]+,\"decode_tok_s\":[0-9.]+,\"ttft_s\":[0-9.]+,\
\"peak_rss_bytes\":[0-9]+,\"weight_bytes_per_token\":[0-9]+"
count "bench json: one line" "$TMP/out" "" 1
bad "bench on a missing model" "no-such" "$BIN" bench -m "$TMP/no-such"
# repeated decode runs, the later ones after the sliding rings (window 8) lost the prompt's window
ok "bench decode runs" "$BIN" bench -m "$TINY" --no-bandwidth --runs 3 --prompt-tokens 20 -n 30
has "bench decode runs line" "$TMP/out" \
  "^decode           30 tokens: [0-9.]+ tok/s \(mean of 3 runs; best [0-9.]+; runs [0-9.]+ [0-9.]+ [0-9.]+\)$"
ok "bench json runs" "$BIN" bench -m "$TINY" --no-bandwidth --json --runs 2 -n 4
has "bench json best run" "$TMP/out" '"decode_tok_s_best":[0-9.]+,"decode_runs":2,'
# the read-bandwidth keys, zero when the probe is off (the 1 GiB probe itself is a measurement: build/read_bandwidth)
has "bench probe keys" "$TMP/out" \
  '"read_bandwidth_gb_s":0.00,"read_bandwidth_before_gb_s":0.00,"read_bandwidth_after_gb_s":0.00,'
# several sessions decoding together
ok "bench parallel json" "$BIN" bench --shape small -n 4 --runs 1 --prompt-tokens 16 --parallel 1,3 --json \
  --no-bandwidth
lacks "bench --json: no notice on stderr" "$TMP/err" "."
P='\{"sessions":N,"aggregate_decode_tok_s":[0-9.]+,"per_session_decode_tok_s":[0-9.]+,"ttft_join_s":[0-9.]+,'
P+='"peak_rss_bytes":[0-9]+\}'
has "bench parallel keys" "$TMP/out" "^\{\"prefill_tok_s\":[0-9.]+,.*\"decode_runs\":1,.*,\"kernels\":\"[a-z0-9]+\",\
\"threads\":[0-9]+,\"device\":\"cpu\",\"join_prompt_tokens\":128,\"parallel\":\[${P/N/1},${P/N/3}\]\}$"
# A device this build or machine lacks is one error line, never a silent fallback to the CPU (a CUDA build on a GPU
# machine runs instead: these tests run on the CPU build).
bad "unknown device" "--device expects cpu or cuda, got 'gpu'" "$BIN" run --device gpu -p hi -n 1
if [ "$("$BIN" run --device cuda -p hi -n 1 2>&1 >/dev/null | grep -c 'device cuda: ')" = 1 ]; then
  bad "no CUDA device" "device cuda: " "$BIN" run --device cuda -p hi -n 1
fi
ok "bench parallel text" "$BIN" bench --shape small -n 4 --runs 1 --prompt-tokens 16 --parallel 2 --no-bandwidth
has "bench parallel line" "$TMP/out" "^parallel 2 +aggregate decode [0-9.]+ tok/s \([0-9.]+x one session's mean\), \
[0-9.]+ tok/s per session; a session joining with 128 prompt tokens: first token after [0-9.]+ s; peak RSS [0-9.]+ GB$"
has "bench on a synthetic shape says so" "$TMP/err" "RANDOM weights"
bad "bench zero runs" "--runs" "$BIN" bench -m "$TINY" --runs 0
bad "bench --parallel 0" "--parallel" "$BIN" bench --shape small --parallel 1,0
bad "bench -m and --shape" "not both" "$BIN" bench -m "$TINY" --shape small
want_checks

echo "cli_commands: $pass passed, $fail failed"
[ "$pass" -gt 0 ] || echo "cli_commands: no check ran, so nothing was tested"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
