#!/usr/bin/env python3
"""A reproducible samples.jsonl for the metrics benchmark: N texts of 30-50 words (mean 40)
drawn from a Zipf(1.1) distribution over a 5,000-word vocabulary (seeded), 8 samples per
prompt. Usage: metrics_corpus.py N SEED > samples.jsonl"""
import json
import random
import sys

n, seed = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
vocab = [f"w{i}" for i in range(5000)]
weights = [1.0 / (i + 1) ** 1.1 for i in range(len(vocab))]
for i in range(n):
    words = rng.choices(vocab, weights=weights, k=rng.randint(30, 50))
    print(json.dumps({"prompt": f"p{i // 8}", "text": " ".join(words)}))
