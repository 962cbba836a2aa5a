#!/usr/bin/env bash
# Side-by-side decode and LoRA-training figures: runner (release build) and the Python stack a
# user would otherwise use (transformers + torch CPU + peft), on the default model, f32, one run.
# Needs: cargo build --release; a Python env with torch, transformers, peft, gguf, trl (1.x)
#   (python3 -m venv /tmp/hf && /tmp/hf/bin/pip install torch transformers peft gguf trl)
# Usage: PY=/tmp/hf/bin/python3 benches/side_by_side.sh
set -euo pipefail
cd "$(dirname "$0")/.."
R=target/release/runner
PY=${PY:-python3}
echo "== machine: $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
$R models pull smollm2-135m-instruct
for t in 1 2; do
  echo "== runner bench decode --batch 8 --new-tokens 128 --threads $t"
  $R bench decode --batch 8 --new-tokens 128 --threads $t --json
done
echo "== runner bench decode --batch 1 --new-tokens 128 --threads 1"
$R bench decode --batch 1 --new-tokens 128 --threads 1 --json
echo "== runner bench train --batch 8 --seq-len 192 --lora-r 16 --targets q_proj,v_proj --threads 2"
$R bench train --batch 8 --seq-len 192 --lora-r 16 --targets q_proj,v_proj --threads 2 --json
echo "== transformers + torch (benches/python/bench_hf.py)"
OMP_NUM_THREADS=2 $PY benches/python/bench_hf.py
echo "== runner bench grpo --rollouts 8 --new-tokens 64 --lora-r 16 --targets q_proj,v_proj --threads 2"
echo "   (load $(cut -d' ' -f1-3 /proc/loadavg))"
$R bench grpo --rollouts 8 --new-tokens 64 --lora-r 16 --targets q_proj,v_proj --threads 2 --steps 3 --json
echo "== TRL GRPOTrainer, same settings (benches/python/bench_trl_grpo.py; needs trl in the env)"
echo "   (load $(cut -d' ' -f1-3 /proc/loadavg))"
OMP_NUM_THREADS=2 $PY benches/python/bench_trl_grpo.py --steps 3 --threads 2 2>/dev/null | tail -1
echo "== done (load $(cut -d' ' -f1-3 /proc/loadavg))"
