#!/usr/bin/env bash
# Self-BLEU and semantic diversity, side by side in one run: NLTK's / sacrebleu's Python loop
# (each text's sentence_bleu against all the others) and `runner metrics` (release build), on
# the same generated corpus (benches/python/metrics_corpus.py: 30-50 words per text, Zipf
# vocabulary, seeded). Prints wall time, peak RSS (/usr/bin/time -v) and the value per run.
# Needs: cargo build --release; a Python env with nltk and sacrebleu
#   (python3 -m venv /tmp/mvenv && /tmp/mvenv/bin/pip install nltk sacrebleu)
# Usage: PY=/tmp/mvenv/bin/python benches/metrics_side_by_side.sh
#   NLTK_SIZES="200 1000"   corpus sizes for the NLTK loop (quadratic: ~5 min at 1,000 on 2 cores)
#   SACRE_SIZES="200"       corpus sizes for the sacrebleu loop
#   RUNNER_SIZES="200 1000 10000"
#   SEMANTIC_SIZES="1000"   corpus sizes for `semantic` with the all-MiniLM-L6-v2 embedder
#   (`semantic` on 10,000 precomputed 384-d embeddings always runs: the metric's own memory)
set -euo pipefail
cd "$(dirname "$0")/.."
R=$PWD/target/release/runner
PY=${PY:-python3}
NLTK_SIZES=${NLTK_SIZES:-"200 1000"}
SACRE_SIZES=${SACRE_SIZES:-"200"}
RUNNER_SIZES=${RUNNER_SIZES:-"200 1000 10000"}
SEMANTIC_SIZES=${SEMANTIC_SIZES:-"1000"}
[ -x "$R" ] || { echo "build first: cargo build --release" >&2; exit 1; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
echo "== $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores; $(uptime | sed 's/.*load/load/')"
for n in $(echo "$NLTK_SIZES $SACRE_SIZES $RUNNER_SIZES $SEMANTIC_SIZES" | tr ' ' '\n' | sort -un); do
  python3 benches/python/metrics_corpus.py "$n" 1 > "$W/s$n.jsonl"
done
python3 benches/python/metrics_embeddings.py 10000 1 > "$W/e10000.jsonl"

# timed LABEL CMD...: runs CMD under /usr/bin/time -v; prints label, wall s, peak RSS MiB, value.
timed() {
  local label=$1; shift
  /usr/bin/time -v "$@" > "$W/out" 2> "$W/time"
  local wall rss value
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$W/time" |
    awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$W/time")
  value=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
v=d.get("values") or {"loop": d}
print(" ".join(f"{k}={x:.10g}" if isinstance(x, float) else f"{k}={x}" for k, x in (v["loop"].items() if "loop" in v else v.items())))' "$W/out")
  printf '%-44s %9.2f s %7s MiB  %s\n' "$label" "$wall" "$rss" "$value"
}

echo "== Self-BLEU (NLTK definition: BLEU-4, method1, str.split())"
for n in $NLTK_SIZES; do
  timed "NLTK loop, $n samples" "$PY" benches/python/metrics_nltk.py "$W/s$n.jsonl" nltk
done
for n in $RUNNER_SIZES; do
  timed "runner metrics self-bleu, $n samples" "$R" metrics --input "$W/s$n.jsonl" --metric self-bleu --json
done
echo "== Self-BLEU (sacrebleu definition: 13a, exp, effective order; 0..100)"
for n in $SACRE_SIZES; do
  timed "sacrebleu loop, $n samples" "$PY" benches/python/metrics_nltk.py "$W/s$n.jsonl" sacre
done
for n in $RUNNER_SIZES; do
  timed "runner metrics self-bleu-sacre, $n samples" "$R" metrics --input "$W/s$n.jsonl" --metric self-bleu-sacre --json
done
echo "== semantic diversity (mean pairwise 1 - cosine)"
for n in $SEMANTIC_SIZES; do
  timed "runner metrics semantic (MiniLM), $n samples" "$R" metrics --input "$W/s$n.jsonl" --metric semantic --json
done
timed "runner metrics semantic, 10000 given embeddings" "$R" metrics --input "$W/e10000.jsonl" --metric semantic --json
echo "== done $(date -u '+%H:%M UTC'); $(uptime | sed 's/.*load/load/')"
