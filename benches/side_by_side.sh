#!/usr/bin/env bash
# The side-by-side figures of BENCHMARKS.md, in one shell, one after the other: runner's decode,
# LoRA training and GRPO step against transformers + torch + peft and TRL on the same machine.
# PY is a Python with transformers, peft, trl and gguf installed (e.g. a venv).
#   cargo build --release && PY=/path/to/venv/bin/python benches/side_by_side.sh
set -u
cd "$(dirname "$0")/.."
R=target/release/runner
PY=${PY:-python3}
export OMP_NUM_THREADS=2
date -u; uptime
echo "== runner decode b8"; $R bench decode --batch 8 --new-tokens 128 --threads 2 --json 2>/dev/null | tail -1
echo "== runner decode b1"; $R bench decode --batch 1 --new-tokens 128 --threads 2 --json 2>/dev/null | tail -1
echo "== runner train"; $R bench train --batch 8 --seq-len 192 --lora-r 16 --targets q_proj,v_proj --threads 2 --steps 2 --json 2>/dev/null | tail -1
echo "== hf"; "$PY" benches/python/bench_hf.py 2>&1 | grep -v -i warn | tail -6
echo "== runner grpo"; $R bench grpo --rollouts 8 --new-tokens 64 --lora-r 16 --targets q_proj,v_proj --threads 2 --steps 2 --json 2>/dev/null | tail -1
echo "== trl"; "$PY" benches/python/bench_trl_grpo.py --steps 2 --threads 2 2>&1 | tail -1
date -u; uptime
