#!/usr/bin/env bash
# cuda_device.sh — on a GPU machine: build the CUDA kernels' test and speed benchmark without the rest of the
# library's dependencies (the lent GPU machines have nvcc but not FFmpeg & co.), run the test, then the benchmark.
#   bash bench/cuda_device.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build-cuda-device}
mkdir -p "$out"
flags="-O3 -std=c11 -w -D_GNU_SOURCE -DGEMMA4C_SOURCE_DIR=\"$PWD\" -Isrc -Iinclude -Itests"
objs=()
for c in src/kernels/quant.c src/kernels/quant_avx2.c src/kernels/quant_avx512.c src/kernels/quant_amx.c \
         src/kernels/quant_neon.c src/core/tensor.c src/core/error.c src/core/threads.c; do
  o="$out/$(basename "$c" .c).o"
  gcc $flags -c "$c" -o "$o" &
  objs+=("$o")
done
# VARIANTS: extra benchmark builds, each a set of nvcc flags (e.g. "-DG4_CUDA_CHUNK=64;-DG4_CUDA_CTAS_PER_SM=16").
IFS=';' read -ra variants <<< "${VARIANTS:-}"
nvcc -O3 -std=c++17 -arch=sm_90 -Isrc -Iinclude -Xptxas -v -c src/kernels/cuda/cuda_quant.cu -o "$out/cuda_quant.o" \
  2> "$out/ptxas.txt" &
for i in "${!variants[@]}"; do
  nvcc -O3 -std=c++17 -arch=sm_90 -Isrc -Iinclude ${variants[$i]} -c src/kernels/cuda/cuda_quant.cu -o "$out/cuda_quant_$i.o" &
done
wait
for prog in tests/test_cuda_quant.c bench/cuda_quant_speed.c; do
  name=$(basename "$prog" .c)
  gcc $flags -I/usr/local/cuda/include -c "$prog" -o "$out/$name.o"
  nvcc -o "$out/$name" "$out/$name.o" "$out/cuda_quant.o" "${objs[@]}" -lpthread -lm
done
for i in "${!variants[@]}"; do
  nvcc -o "$out/cuda_quant_speed_$i" "$out/cuda_quant_speed.o" "$out/cuda_quant_$i.o" "${objs[@]}" -lpthread -lm
done
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv,noheader || true
"$out/test_cuda_quant"
"$out/cuda_quant_speed"
for i in "${!variants[@]}"; do
  echo "== ${variants[$i]}"
  "$out/cuda_quant_speed_$i"
done
