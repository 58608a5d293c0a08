#!/usr/bin/env bash
# cuda_device.sh — on a GPU machine: build the CUDA kernels' test and speed benchmark, the CUDA backend's test and
# the golden tests that need no media decoding (test_trained, slow_fullsize) without the library's media
# dependencies (the lent GPU machines have nvcc but not FFmpeg & co.), run the tests on the GPU, then the benchmark.
#   bash bench/cuda_device.sh --pack     here, first: copies what the GPU machine lacks (cJSON's and zlib's header
#                                        and library, golden data: the tiny and trained models, the full-size
#                                        references) into build-cuda-deps/, to be carried
#   bash bench/cuda_device.sh [OUT_DIR]  on the GPU machine (device run with carry: ["build-cuda-deps"])
set -euo pipefail
cd "$(dirname "$0")/.."
deps=build-cuda-deps

if [ "${1:-}" = --pack ]; then
  rm -rf "$deps"
  mkdir -p "$deps/include/cjson" "$deps/lib" "$deps/golden"
  libdir=$(pkg-config --variable=libdir libcjson 2>/dev/null || echo /usr/lib/x86_64-linux-gnu)
  cp /usr/include/cjson/cJSON.h "$deps/include/cjson/"
  cp -L "$libdir/libcjson.so.1" "$deps/lib/"
  cp /usr/include/zlib.h /usr/include/zconf.h "$deps/include/"
  cp "$libdir/libz.a" "$deps/lib/"
  golden=${GEMMA4C_GOLDEN:-../shared/golden}
  if [ -d "$golden/tiny" ]; then
    mkdir -p "$deps/golden/tiny/reference"
    cp -r "$golden/tiny/checkpoint" "$golden/trained" "$golden/synthetic" "$deps/golden/"
    mv "$deps/golden/checkpoint" "$deps/golden/tiny/"
    for f in text vision_photo audio_speech; do cp "$golden/tiny/reference/$f.safetensors" "$deps/golden/tiny/reference/"; done
  else echo "no golden data at $golden: the model checks will be skipped"; fi
  du -sh "$deps"
  exit 0
fi

out=${1:-build-cuda-device}
mkdir -p "$out/lib"
inc="-Isrc -Iinclude -Itests"
[ -d "$deps/include" ] && inc="$inc -I$deps/include"
flags="-O3 -std=c11 -w -D_GNU_SOURCE -DGEMMA4C_SOURCE_DIR=\"$PWD\" $inc"
if [ -f "$deps/lib/libcjson.so.1" ]; then
  libs="-Xlinker $deps/lib/libcjson.so.1 -Xlinker -rpath=$PWD/$deps/lib"
else
  libs="-lcjson"
fi
if [ -f "$deps/lib/libz.a" ]; then libs="$libs $deps/lib/libz.a"; else libs="$libs -lz"; fi

# The kernels' test and benchmark: the quantization code alone.
objs=()
for c in src/kernels/quant.c src/kernels/quant_avx2.c src/kernels/quant_avx512.c src/kernels/quant_amx.c \
         src/kernels/quant_neon.c src/core/tensor.c src/core/error.c src/core/threads.c; do
  o="$out/$(basename "$c" .c).o"
  gcc $flags -c "$c" -o "$o" &
  objs+=("$o")
done
# VARIANTS: extra benchmark builds, each a set of nvcc flags (e.g. "-DG4_CUDA_CHUNK=64;-DG4_CUDA_CTAS_PER_SM=16").
IFS=';' read -ra variants <<< "${VARIANTS:-}"
nvcc -O3 -std=c++17 -arch=sm_90 $inc -Xptxas -v -c src/kernels/cuda/cuda_quant.cu -o "$out/cuda_quant.o" \
  2> "$out/ptxas.txt" &
for i in "${!variants[@]}"; do
  nvcc -O3 -std=c++17 -arch=sm_90 $inc ${variants[$i]} -c src/kernels/cuda/cuda_quant.cu -o "$out/cuda_quant_$i.o" &
done
# The backend's test: the library without media decoding and the runtime (those need FFmpeg and image libraries).
cmake -DIN=src/model/calibration.txt -DOUT="$out/lib/calibration_text.c" -DNAME=g4_calibration_text -P cmake/embed.cmake
lib_objs=()
for c in src/core/*.c src/format/*.c src/text/*.c src/model/*.c src/synth/*.c src/backend/*.c src/kernels/*.c \
         "$out/lib/calibration_text.c"; do
  case "$c" in *cuda_absent.c) continue ;; esac
  o="$out/lib/$(echo "$c" | tr / _ | sed 's/\.c$/.o/')"
  gcc $flags -c "$c" -o "$o" &
  lib_objs+=("$o")
done
for cu in src/backend/*.cu; do
  o="$out/lib/$(basename "$cu" .cu).o"
  nvcc -O3 -std=c++17 -arch=sm_90 $inc -Xptxas -v -c "$cu" -o "$o" 2> "$out/ptxas_$(basename "$cu" .cu).txt" &
  lib_objs+=("$o")
done
wait
for prog in tests/test_cuda_quant.c bench/cuda_quant_speed.c; do
  name=$(basename "$prog" .c)
  gcc $flags -I/usr/local/cuda/include -c "$prog" -o "$out/$name.o"
  nvcc -o "$out/$name" "$out/$name.o" "$out/cuda_quant.o" "${objs[@]}" -lpthread -lm
done
# The golden tests that need no media decoding, on the GPU (--device cuda).
for t in test_cuda_backend test_trained slow_fullsize; do
  gcc $flags -c tests/$t.c -o "$out/$t.o"
  nvcc -o "$out/$t" "$out/$t.o" "${lib_objs[@]}" "$out/cuda_quant.o" $libs -lpthread -lm
done
for i in "${!variants[@]}"; do
  nvcc -o "$out/cuda_quant_speed_$i" "$out/cuda_quant_speed.o" "$out/cuda_quant_$i.o" "${objs[@]}" -lpthread -lm
done
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv,noheader || true
status=0
"$out/test_cuda_quant" || status=1
[ -d "$deps/golden/tiny" ] && export GEMMA4C_GOLDEN="$PWD/$deps/golden"
"$out/test_cuda_backend" || status=1
"$out/test_trained" --device cuda || status=1
"$out/slow_fullsize" --device cuda || status=1
"$out/cuda_quant_speed"
for i in "${!variants[@]}"; do
  echo "== ${variants[$i]}"
  "$out/cuda_quant_speed_$i"
done
exit $status
