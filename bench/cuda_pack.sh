#!/usr/bin/env bash
# cuda_pack.sh — the whole CUDA build (CLI, golden tests, kernel benchmark) with the shared libraries it needs,
# packed for a GPU machine that has a driver but not FFmpeg & co.; bench/cuda_run.sh runs it there.
#   bash bench/cuda_pack.sh [BASE_BINARY]   here: builds build-cuda/, writes build-gpu/ (under 64 MiB: the pack,
#                                           xz-compressed, and the golden files the tests read). BASE_BINARY: an
#                                           earlier gemma4c to A/B against (packed as gemma4c_base).
#   then: device run, command "bash bench/cuda_run.sh", carry ["build-gpu"]
set -euo pipefail
cd "$(dirname "$0")/.."
nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
bins="gemma4c test_multimodal test_batch test_bidirectional test_cuda_backend test_cuda_quant cuda_quant_speed"
cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DGEMMA4C_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc" >/dev/null
cmake --build build-cuda -j "$(nproc)" --target gemma4c_cli $(echo "$bins" | sed 's/\bgemma4c\b//')
stage=$(mktemp -d)
mkdir -p "$stage/gpupack/bin" "$stage/gpupack/lib"
for b in $bins; do cp "build-cuda/$b" "$stage/gpupack/bin/"; done
[ -n "${1:-}" ] && cp "$1" "$stage/gpupack/bin/gemma4c_base"
# every library the binaries load but the C and C++ runtimes, which the GPU machine has (newer)
for b in "$stage"/gpupack/bin/*; do ldd "$b" | awk '$3 ~ /^\// {print $3}'; done | sort -u |
  grep -v -E '/(libc|libm|libstdc\+\+|libgcc_s|libpthread|libdl|librt|libresolv)\.so' |
  while read -r l; do cp -L "$l" "$stage/gpupack/lib/"; done
rm -rf build-gpu
mkdir -p build-gpu/golden/tiny/reference build-gpu/golden/media
tar cf - -C "$stage" gpupack | xz -T"$(nproc)" -9 > build-gpu/gpupack.tar.xz
rm -rf "$stage"
golden=${GEMMA4C_GOLDEN:-../shared/golden}
cp -r "$golden/tiny/checkpoint" build-gpu/golden/tiny/
for f in text vision_photo audio_speech multimodal; do cp "$golden/tiny/reference/$f.safetensors" build-gpu/golden/tiny/reference/; done
for f in chelsea.png small.png speech_16k.wav clip.mp4 coffee.jpg; do cp "$golden/media/$f" build-gpu/golden/media/; done
du -sh build-gpu
