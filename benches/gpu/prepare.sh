#!/usr/bin/env bash
# Here (the build machine): build the CUDA runner and test binary and stage what the GPU machine
# needs into .gpu/ (ignored through .git/info/exclude; name it in the device call's `carry`).
# Needs nvcc (see docs/cuda.md); CUDA_COMPUTE_CAP defaults to 90 (H100/H200).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/cuda-target}
grep -qx '/.gpu/' .git/info/exclude || echo '/.gpu/' >> .git/info/exclude
mkdir -p .gpu/smol
cargo build --release --features cuda --bin runner
test_bin=$(cargo test --release --features cuda --test cuda --no-run --message-format=json \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "cuda" and m.get("executable"):
        print(m["executable"])')
strip -o .gpu/runner "$CARGO_TARGET_DIR/release/runner"
strip -o .gpu/cuda-test "$test_bin"
# The real SmolLM2-135M-Instruct config and tokenizer (the weights are random-initialised there).
tmp=$(mktemp -d)
"$CARGO_TARGET_DIR/release/runner" export --model smollm2-135m-instruct --out "$tmp" --dtype bf16 >/dev/null
cp "$tmp"/{config.json,generation_config.json,tokenizer.json,tokenizer_config.json} .gpu/smol/
rm -rf "$tmp"
du -sh .gpu
