#!/usr/bin/env bash
# cuda_run.sh — on the GPU machine, what bench/cuda_pack.sh packed: the CUDA golden tests (--device cuda), the
# kernels' speed, then `gemma4c bench --device cuda` (E4B q4: one session and 8/32/64 together; a 1,000-token
# prompt with an image), with the GPU memory in use sampled alongside. Results and logs go to $OUT (or ./cuda-out).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-cuda-out}
mkdir -p "$out" /work
# the tests look for their data files under the source directory they were built in
[ -e /work/main ] || ln -s "$PWD" /work/main
tar xJf build-gpu/gpupack.tar.xz -C /tmp
export LD_LIBRARY_PATH=/tmp/gpupack/lib GEMMA4C_GOLDEN=$PWD/build-gpu/golden
B=/tmp/gpupack/bin
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
status=0
for t in test_cuda_quant test_cuda_backend; do timeout 150 "$B/$t" > "$out/$t.log" 2>&1 || status=1; tail -3 "$out/$t.log"; done
for t in test_multimodal test_batch test_bidirectional; do
  timeout 150 "$B/$t" --device cuda > "$out/$t.log" 2>&1 || status=1
  tail -3 "$out/$t.log"
done
"$B/cuda_quant_speed" 2>&1 | tee "$out/quant_speed.txt"
(while sleep 0.5; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done > "$out/gpumem.txt") &
sampler=$!
if [ -x "$B/gemma4c_base" ]; then
  echo "== before (gemma4c_base)"
  timeout 150 "$B/gemma4c_base" bench --device cuda --shape e4b --quant q4 -n 64 --runs 2 2>&1 | tee "$out/bench_base.txt"
fi
echo "== gemma4c"
timeout 200 "$B/gemma4c" bench --device cuda --shape e4b --quant q4 -n 128 --runs 3 --parallel 1,8,32,64 2>&1 |
  tee "$out/bench_e4b_q4.txt"
timeout 120 "$B/gemma4c" bench --device cuda --shape e4b --quant q4 --prompt-tokens 1000 -n 16 --runs 1 \
  --image build-gpu/golden/media/coffee.jpg 2>&1 | tee "$out/bench_e4b_image.txt"
kill "$sampler"
echo "most GPU memory in use: $(sort -n "$out/gpumem.txt" | tail -1) MiB"
exit $status
