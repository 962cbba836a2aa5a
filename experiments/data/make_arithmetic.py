#!/usr/bin/env python3
"""Write arithmetic/train.jsonl (200 rows) and arithmetic/eval.jsonl (50 rows): small
problems with one exact integer answer, mostly easy so a 135M model can learn the answer
format quickly with RL.

    python3 experiments/data/make_arithmetic.py

Row: {"id", "question", "answer"}; answer is the integer as a string ("12", "-3"), the same
shape as ../shared/data/math/*.jsonl. No question appears twice across the two files.
Mix: 35 % one-digit addition, 20 % one-digit subtraction (a few negative results),
20 % multiplication table, 15 % two-digit addition/subtraction, 10 % two-step problems.
Seeded; Python 3.11 standard library only. Written for this project (Apache-2.0).
"""

import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 135
N_TRAIN, N_EVAL = 200, 50

PHRASES = {
    "+": ["What is {a} + {b}?", "Compute {a} + {b}.", "What is {a} plus {b}?"],
    "-": ["What is {a} - {b}?", "Compute {a} - {b}.", "What is {a} minus {b}?"],
    "*": ["What is {a} * {b}?", "Compute {a} * {b}.", "What is {a} times {b}?"],
}


def one(rng: random.Random) -> tuple:
    kind = rng.choices(["add1", "sub1", "mul", "two", "step"], weights=[35, 20, 20, 15, 10])[0]
    if kind == "add1":
        a, b, op = rng.randint(0, 9), rng.randint(0, 9), "+"
    elif kind == "sub1":
        a, b, op = rng.randint(0, 9), rng.randint(0, 9), "-"
        if a < b and rng.random() < 0.8:  # mostly non-negative results
            a, b = b, a
    elif kind == "mul":
        a, b, op = rng.randint(2, 9), rng.randint(2, 9), "*"
    elif kind == "two":
        a, b, op = rng.randint(10, 99), rng.randint(10, 99), rng.choice("+-")
        if op == "-" and a < b:
            a, b = b, a
    else:
        a, b, c = rng.randint(2, 9), rng.randint(2, 9), rng.randint(1, 20)
        op2 = rng.choice("+-")
        question = f"What is {a} * {b} {op2} {c}?"
        value = a * b + c if op2 == "+" else a * b - c
        return question, value, f"{a}*{b}{op2}{c}"
    question = rng.choice(PHRASES[op]).format(a=a, b=b)
    value = a + b if op == "+" else a - b if op == "-" else a * b
    return question, value, f"{a}{op}{b}"


def main() -> None:
    rng = random.Random(SEED)
    seen, rows = set(), []
    while len(rows) < N_TRAIN + N_EVAL:
        question, value, key = one(rng)  # key: "7+5" whatever the phrasing
        if key in seen:
            continue
        seen.add(key)
        rows.append((question, value))
    folder = os.path.join(HERE, "arithmetic")
    os.makedirs(folder, exist_ok=True)
    for split, part in (("train", rows[:N_TRAIN]), ("eval", rows[N_TRAIN:])):
        path = os.path.join(folder, f"{split}.jsonl")
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            for k, (question, value) in enumerate(part, start=1):
                row = {"id": f"arith-{split}-{k:03d}", "question": question, "answer": str(value)}
                fh.write(json.dumps(row) + "\n")
        print(f"wrote arithmetic/{split}.jsonl: {len(part)} rows")


if __name__ == "__main__":
    main()
