#!/usr/bin/env bash
# Side-by-side figures of BENCHMARKS.md: runner (release build) and the Python stack a user would
# otherwise use (transformers + torch CPU + peft, TRL 1.x) on the default model, f32, 2 threads,
# one shell, one after the other.
# Needs: cargo build --release; a Python env with torch, transformers, peft, gguf, trl (1.x)
#   (python3 -m venv /tmp/hf && /tmp/hf/bin/pip install torch transformers peft gguf trl)
# Usage: PY=/tmp/hf/bin/python3 benches/side_by_side.sh
# (Session 4's figures came from an earlier version of this script that also ran decode with
# 1 thread and 3 GRPO steps; see git history.)
set -uo pipefail
cd "$(dirname "$0")/.."
R=target/release/runner
PY=${PY:-python3}
export OMP_NUM_THREADS=2
echo "== machine: $(nproc) cores; $(date -u); load $(cut -d' ' -f1-3 /proc/loadavg)"
$R models pull smollm2-135m-instruct
echo "== runner decode b8"; $R bench decode --batch 8 --new-tokens 128 --threads 2 --json 2>/dev/null | tail -1
echo "== runner decode b1"; $R bench decode --batch 1 --new-tokens 128 --threads 2 --json 2>/dev/null | tail -1
echo "== runner train"; $R bench train --batch 8 --seq-len 192 --lora-r 16 --targets q_proj,v_proj --threads 2 --steps 2 --json 2>/dev/null | tail -1
echo "== transformers + torch (benches/python/bench_hf.py)"; "$PY" benches/python/bench_hf.py 2>&1 | grep -v -i warn | tail -6
echo "== runner grpo"; $R bench grpo --rollouts 8 --new-tokens 64 --lora-r 16 --targets q_proj,v_proj --threads 2 --steps 2 --json 2>/dev/null | tail -1
echo "== TRL GRPOTrainer (benches/python/bench_trl_grpo.py)"; "$PY" benches/python/bench_trl_grpo.py --steps 2 --threads 2 2>&1 | tail -1
echo "== done: $(date -u); load $(cut -d' ' -f1-3 /proc/loadavg)"
