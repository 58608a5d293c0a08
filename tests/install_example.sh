#!/usr/bin/env bash
# install_example.sh — the installed tree: `cmake --install` into a temporary prefix, its files and exported
# symbols, then examples/chat_image.c built against that tree alone (pkg-config; shared and static library) and
# run on the golden tiny checkpoint. Usage: tests/install_example.sh BUILD_DIR (from the repository root).
# shellcheck disable=SC2015 # `CHECK && ok || fail`: ok never fails
set -u
BUILD="${1:-build}"
CC="${CC:-cc}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
GOLDEN="${GEMMA4C_GOLDEN:-$ROOT/../shared/golden}"
PREFIX="$(mktemp -d)"
trap 'rm -rf "$PREFIX"' EXIT
pass=0
fail() { echo "install: FAIL: $*"; [ -f "$PREFIX/err" ] && cat "$PREFIX/err"; exit 1; }
ok() { pass=$((pass+1)); } # never fails, so `CHECK && ok || fail MESSAGE` reads as if-then-else

cmake --install "$BUILD" --prefix "$PREFIX" >"$PREFIX/log" 2>&1 || { cat "$PREFIX/log"; fail "cmake --install"; }
# The library directory is GNUInstallDirs' choice (lib, lib64, lib/x86_64-linux-gnu): found through the .pc.
PC="$(find "$PREFIX" -path '*/pkgconfig/gemma4c.pc' | head -1)"
[ -n "$PC" ] || fail "no gemma4c.pc under $PREFIX"
LIBDIR="$(dirname "$(dirname "$PC")")"
for f in "$PREFIX/bin/gemma4c" "$PREFIX/include/gemma4c.h" "$LIBDIR/libgemma4c.a" "$LIBDIR/libgemma4c.so"; do
  [ -e "$f" ] && ok || fail "${f#"$PREFIX"/} is not installed"
done
ls "$LIBDIR"/libgemma4c.so.[0-9]* >/dev/null 2>&1 && ok || fail "no versioned libgemma4c.so.N"
version="$(PKG_CONFIG_PATH="$LIBDIR/pkgconfig" pkg-config --modversion gemma4c)"
[ "$("$PREFIX/bin/gemma4c" --version)" = "gemma4c $version" ] && ok || fail "bin/gemma4c --version is not $version"

# The shared library exports the API and nothing else.
nm -D --defined-only "$LIBDIR/libgemma4c.so" | awk '{print $NF}' >"$PREFIX/symbols"
others="$(grep -v '^gemma4c_' "$PREFIX/symbols")"
[ -z "$others" ] && ok || fail "libgemma4c.so exports more than gemma4c_*: $(echo "$others" | head -5 | tr '\n' ' ')"
grep -qx gemma4c_generate "$PREFIX/symbols" && grep -qx gemma4c_model_load "$PREFIX/symbols" && ok \
  || fail "libgemma4c.so does not export gemma4c_generate / gemma4c_model_load"

# The example, built the way examples/README.md says: the installed header and gemma4c.pc, nothing of the tree.
export PKG_CONFIG_PATH="$LIBDIR/pkgconfig"
WARN="-std=c11 -Wall -Wextra -pedantic -Werror"
# shellcheck disable=SC2046,SC2086
$CC $WARN "$ROOT/examples/chat_image.c" -o "$PREFIX/chat_shared" $(pkg-config --cflags --libs gemma4c) 2>"$PREFIX/err" \
  && ok || fail "the example does not build against the shared library"
readelf -d "$PREFIX/chat_shared" | grep -q 'NEEDED.*libgemma4c\.so' && ok \
  || fail "chat_shared does not need libgemma4c.so"
# Static: the archive in place of -lgemma4c, with what `pkg-config --static` adds for its dependencies.
libs="$(pkg-config --static --libs gemma4c)"
# shellcheck disable=SC2046,SC2086
$CC $WARN "$ROOT/examples/chat_image.c" -o "$PREFIX/chat_static" $(pkg-config --cflags gemma4c) \
  ${libs/-lgemma4c/$LIBDIR/libgemma4c.a} 2>"$PREFIX/err" && ok || fail "the example does not link with libgemma4c.a"
! readelf -d "$PREFIX/chat_static" | grep -q 'NEEDED.*libgemma4c' && ok || fail "chat_static still needs libgemma4c.so"
rm -f "$PREFIX/err"

# Run it on the tiny checkpoint (greedy, so the two builds answer alike).
TINY="$GOLDEN/tiny/checkpoint"
if [ ! -d "$TINY" ]; then
  if [ "${CI:-}" = "true" ]; then fail "golden data not found under CI"; fi
  echo "install: $pass checks passed; SKIPPED running the example: golden data not found"; exit 0
fi
IMAGE="$GOLDEN/media/small.png"
LD_LIBRARY_PATH="$LIBDIR" "$PREFIX/chat_shared" "$TINY" "$IMAGE" "What is in it?" >"$PREFIX/out" 2>"$PREFIX/err" \
  && ok || fail "chat_shared exited $?"
grep -Eq '^timings: time to first token [0-9.]+ s, prefill [0-9.]+ tok/s, decode [0-9.]+ tok/s, media [0-9.]+ s$' \
  "$PREFIX/err" && ok || fail "no timings line"
grep -Eq '^tokens: [0-9]+ prompt \(0 cached, 260 from the image\), [1-9][0-9]* generated$' "$PREFIX/err" && ok \
  || fail "no token counts line (small.png is 260 soft tokens)"
[ -s "$PREFIX/out" ] && ok || fail "chat_shared streamed nothing"
"$PREFIX/chat_static" "$TINY" "$IMAGE" "What is in it?" >"$PREFIX/out_static" 2>/dev/null && ok \
  || fail "chat_static exited $?"
cmp -s "$PREFIX/out" "$PREFIX/out_static" && ok || fail "the shared and static builds answered differently"
# A bad input: one line naming the file, exit 1.
"$PREFIX/chat_static" "$TINY" "$PREFIX/missing.png" >/dev/null 2>"$PREFIX/err"
rc=$?
[ $rc -eq 1 ] && [ "$(wc -l <"$PREFIX/err")" -eq 1 ] && grep -q missing.png "$PREFIX/err" && ok \
  || fail "a missing image: exit $rc, wanted 1 and one line naming it"
rm -f "$PREFIX/err"
echo "install: $pass checks passed"
