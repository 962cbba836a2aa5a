#!/usr/bin/env python3
"""NLTK's Self-BLEU loop (and optionally sacrebleu's) over a samples.jsonl, timed: each text's
sentence_bleu against all the others, as evaluation scripts write it.
Usage: metrics_nltk.py samples.jsonl [nltk|sacre]
Prints {"self_bleu": mean, "seconds": wall time of the loop, "samples": n} as JSON."""
import json
import sys
import time

path = sys.argv[1]
which = sys.argv[2] if len(sys.argv) > 2 else "nltk"
texts = [json.loads(line)["text"] for line in open(path, encoding="utf-8") if line.strip()]
t0 = time.perf_counter()
if which == "nltk":
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    toks = [t.split() for t in texts]
    sf = SmoothingFunction().method1
    scores = [sentence_bleu(toks[:i] + toks[i + 1:], toks[i], smoothing_function=sf)
              for i in range(len(toks))]
else:
    import sacrebleu

    scores = [sacrebleu.sentence_bleu(texts[i], texts[:i] + texts[i + 1:]).score
              for i in range(len(texts))]
secs = time.perf_counter() - t0
print(json.dumps({"which": which, "samples": len(texts), "self_bleu": sum(scores) / len(scores),
                  "seconds": secs}))
