#!/usr/bin/env python3
"""samples.jsonl rows with a random unit-norm 384-d `embedding` each (seeded), for measuring
the memory of `runner metrics --metric semantic` itself on many samples without the embedder.
Usage: metrics_embeddings.py N SEED > samples.jsonl"""
import json
import math
import random
import sys

n, seed = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
for i in range(n):
    v = [rng.gauss(0.0, 1.0) for _ in range(384)]
    s = math.sqrt(sum(x * x for x in v))
    print(json.dumps({"text": f"t{i}", "embedding": [round(x / s, 6) for x in v]}))
