#!/usr/bin/env bash
# On the lent GPU machine (no Rust there): run the prebuilt CUDA test binary and benches carried
# in .gpu/, then HF transformers' generate on the same random-init SmolLM2-135M-shaped model.
# usage: bash benches/gpu/run.sh [tests|bench|all]   (logs under $OUT, default /tmp/gpu-out)
set -u
what=${1:-all}
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
G=$PWD/.gpu
# The CUDA libraries candle loads (cudart, cublas, cublasLt, curand, nvrtc) from torch's pip wheels.
SP=$(python3 -c 'import site; print(site.getsitepackages()[0])')
LIBS=$(find "$SP/nvidia" -name 'lib*.so*' \( -name 'libcudart*' -o -name 'libcublas*' -o -name 'libcurand*' -o -name 'libnvrtc*' \) -printf '%h\n' | sort -u | paste -sd:)
export LD_LIBRARY_PATH=$LIBS:${LD_LIBRARY_PATH:-}
{
  date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  ldd "$G/runner" | grep -i -E 'cuda|cublas|curand|nvrtc|not found'
} 2>&1 | tee "$OUT/env.log"
if [ "$what" != bench ]; then
  for t in "$G"/cuda-test "$G"/engine-model-test; do
    [ -x "$t" ] || continue
    echo "== $t"; timeout 300 "$t" --test-threads=1 2>&1
    echo "rc=$?"
  done | tee "$OUT/tests.log"
fi
[ "$what" = tests ] && exit 0
M=/tmp/smol-random
python3 benches/gpu/make_model.py "$G/smol" "$M" 2>&1 | tail -2 | tee "$OUT/bench.log"
{
  for dt in f32 bf16; do for b in 8 1; do
    timeout 240 "$G/runner" bench decode --model "$M" --device cuda --dtype $dt --batch $b --new-tokens 128 --json 2>&1 | tail -1
  done; done
  timeout 120 "$G/runner" bench train --model "$M" --device cuda --dtype f32 --batch 8 --seq-len 192 --lora-r 16 --json 2>&1 | tail -1
  timeout 120 "$G/runner" bench grpo --model "$M" --device cuda --dtype f32 --rollouts 8 --new-tokens 64 --lora-r 16 --json 2>&1 | tail -1
  PYTHONUNBUFFERED=1 timeout 300 python3 benches/gpu/hf_generate.py "$M" 3 2>&1 | grep -v Warning
} 2>&1 | tee -a "$OUT/bench.log"
