#!/usr/bin/env python3
"""Validate every example data set in experiments/data/. Exit 0 when all is well, 1 otherwise.

    python3 experiments/data/check_data.py

Checks: every JSONL line parses and has exactly the documented fields; ids are unique within
each folder; extraction references parse and match their labels; every sql_qa reference query
runs against commerce.db and returns its expected_rows / expected_answer; push references fit
max_chars; insights key_numbers appear in the reference; completions' parser flags are right;
outcomes match their headlines (and 20250807 has none); arithmetic answers are correct;
size limits hold. Python 3.11 standard library only. Written for this project (Apache-2.0).
"""

import json
import os
import re
import sqlite3
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_pairs import render_answer, seed_extract_json, strict_ok  # noqa: E402

PROBLEMS = []

PAIR_FIELDS = {
    "extraction": {"id", "task", "prompt", "reference", "expected", "pt_decimal_hint"},
    "sql_qa": {"id", "task", "prompt", "reference", "question", "reference_sql", "expected_rows",
               "expected_answer"},
    "insights": {"id", "task", "prompt", "reference", "figures", "key_numbers"},
    "push": {"id", "task", "prompt", "reference", "context", "max_chars"},
}
EXTRACTION_ENUMS = {
    "sentiment": {"positivo", "neutro", "negativo"},
    "complaint_category": {"entrega", "produto", "atendimento", "pagamento", "outro", "nenhuma"},
}


def problem(where: str, message: str) -> None:
    PROBLEMS.append(f"{where}: {message}")


def load(rel: str) -> list:
    path = os.path.join(HERE, rel)
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                problem(f"{rel}:{n}", f"bad JSON: {err}")
                continue
            if not isinstance(row, dict):
                problem(f"{rel}:{n}", "not an object")
                continue
            row["_where"] = f"{rel}:{n}"
            rows.append(row)
    return rows


def unique_ids(rows: list, label: str) -> None:
    seen = set()
    for row in rows:
        if row.get("id") in seen:
            problem(row["_where"], f"duplicate id {row.get('id')} in {label}")
        seen.add(row.get("id"))


def fields(row: dict, expected: set) -> None:
    got = set(row) - {"_where"}
    if got != expected:
        problem(row["_where"], f"fields {sorted(got)} != {sorted(expected)}")


def check_pairs(con: sqlite3.Connection) -> None:
    all_rows = []
    for split, per_task in (("train", 40), ("eval", 10)):
        rows = load(f"pairs/{split}.jsonl")
        all_rows += rows
        counts = {}
        for row in rows:
            task = row.get("task")
            if task not in PAIR_FIELDS:
                problem(row["_where"], f"unknown task {task!r}")
                continue
            counts[task] = counts.get(task, 0) + 1
            fields(row, PAIR_FIELDS[task])
            if not row["id"].startswith(f"{task}-{split}-"):
                problem(row["_where"], f"id {row['id']} does not name its task and split")
            msgs = row["prompt"]
            if not (isinstance(msgs, list) and msgs and msgs[-1].get("role") == "user"
                    and all(set(m) == {"role", "content"} and m["content"] for m in msgs)):
                problem(row["_where"], "prompt must be [{role, content}...] ending with a user message")
            if not isinstance(row["reference"], str) or not row["reference"].strip():
                problem(row["_where"], "empty reference")
            globals()[f"check_{task}"](row, con)
        if counts != {t: per_task for t in PAIR_FIELDS}:
            problem(f"pairs/{split}.jsonl", f"task counts {counts}")
    unique_ids(all_rows, "pairs")
    eval_ids = {r["id"] for r in all_rows if "-eval-" in r["id"] and r["task"] == "extraction"}
    expected_by_id = {r["id"]: r.get("expected") for r in all_rows}
    for row in load("pairs/completions_sample.jsonl"):
        fields(row, {"id", "prompt_id", "task", "quirk", "completion", "strict_json_ok",
                     "seed_parser_ok", "seed_parser_matches_expected"})
        if row["prompt_id"] not in eval_ids:
            problem(row["_where"], f"prompt_id {row['prompt_id']} is no extraction eval row")
            continue
        parsed = seed_extract_json(row["completion"])
        flags = (strict_ok(row["completion"]), parsed is not None,
                 parsed == expected_by_id[row["prompt_id"]])
        if flags != (row["strict_json_ok"], row["seed_parser_ok"], row["seed_parser_matches_expected"]):
            problem(row["_where"], f"parser flags {flags} disagree with the row")


def check_extraction(row: dict, _con) -> None:
    exp = row["expected"]
    if json.loads(row["reference"]) != exp:
        problem(row["_where"], "reference JSON != expected")
    for key, allowed in EXTRACTION_ENUMS.items():
        if exp.get(key) not in allowed:
            problem(row["_where"], f"{key}={exp.get(key)!r} not in {sorted(allowed)}")
    score = exp.get("sentiment_score")
    if not isinstance(score, float) or not 0 <= score <= 5:
        problem(row["_where"], f"sentiment_score {score!r} is not a number in 0..5")
    if not isinstance(exp.get("requires_response"), bool) or not exp.get("product"):
        problem(row["_where"], "requires_response must be a bool and product non-empty")


def check_sql_qa(row: dict, con: sqlite3.Connection) -> None:
    if row["reference"] != row["reference_sql"]:
        problem(row["_where"], "reference != reference_sql")
    try:
        got = [list(r) for r in con.execute(row["reference_sql"]).fetchall()]
    except sqlite3.Error as err:
        problem(row["_where"], f"reference_sql fails: {err}")
        return
    if got != row["expected_rows"]:
        problem(row["_where"], f"expected_rows {row['expected_rows']} != db {got}")
    if render_answer(got) != row["expected_answer"]:
        problem(row["_where"], "expected_answer does not render the db result")
    if row["question"] not in row["prompt"][-1]["content"]:
        problem(row["_where"], "question missing from the prompt")


def check_insights(row: dict, _con) -> None:
    for key in row["key_numbers"]:
        if key not in row["reference"]:
            problem(row["_where"], f"key number {key!r} missing from the reference")


def check_push(row: dict, _con) -> None:
    if len(row["reference"]) > row["max_chars"]:
        problem(row["_where"], f"reference longer than {row['max_chars']} chars")
    if row["context"]["customer_name"] not in row["reference"]:
        problem(row["_where"], "reference does not name the customer")


def check_headlines() -> None:
    days = ["20250802", "20250803", "20250804", "20250805", "20250806", "20250807"]
    found = sorted(f[:-6] for f in os.listdir(os.path.join(HERE, "headlines")))
    if found != days:
        problem("headlines/", f"days {found} != {days}")
    found = sorted(f[:-6] for f in os.listdir(os.path.join(HERE, "outcomes")))
    if found != days[:-1]:
        problem("outcomes/", f"days {found} != {days[:-1]} (20250807 must have no outcomes)")
    all_rows = []
    for day in days:
        heads = load(f"headlines/{day}.jsonl")
        all_rows += heads
        for row in heads:
            fields(row, {"id", "date", "ticker", "text"})
            if row["date"] != day or not row["id"].startswith(day) or f"${row['ticker']}" not in row["text"]:
                problem(row["_where"], "date/id/ticker inconsistent")
        if day == days[-1]:
            continue
        outs = load(f"outcomes/{day}.jsonl")
        if sorted(r["ticker"] for r in outs) != sorted({r["ticker"] for r in heads}):
            problem(f"outcomes/{day}.jsonl", "tickers differ from that day's headlines")
        for row in outs:
            fields(row, {"date", "ticker", "close", "next_date", "next_close", "move_pct"})
            move = round(100.0 * (row["next_close"] - row["close"]) / row["close"], 4)
            if row["date"] != day or row["next_date"] != days[days.index(day) + 1] or move != row["move_pct"]:
                problem(row["_where"], "date/next_date/move_pct inconsistent")
    unique_ids(all_rows, "headlines")


def check_posts() -> None:
    rows = load("posts/train.jsonl") + load("posts/eval.jsonl")
    if len(rows) != 80:
        problem("posts/", f"{len(rows)} rows, expected 60 + 20")
    for row in rows:
        fields(row, {"id", "post", "reply"})
        if not row["post"].strip() or not row["reply"].strip():
            problem(row["_where"], "empty post or reply")
    unique_ids(rows, "posts")
    if len({r["post"] for r in rows}) != len(rows):
        problem("posts/", "a post appears twice")


def check_arithmetic() -> None:
    rows = load("arithmetic/train.jsonl") + load("arithmetic/eval.jsonl")
    if len(rows) != 250:
        problem("arithmetic/", f"{len(rows)} rows, expected 200 + 50")
    words = {" plus ": " + ", " minus ": " - ", " times ": " * "}
    for row in rows:
        fields(row, {"id", "question", "answer"})
        expr = re.sub(r"^(What is|Compute) ", "", row["question"]).rstrip("?.")
        for word, sym in words.items():
            expr = expr.replace(word, sym)
        if not re.fullmatch(r"[0-9 +*-]+", expr):
            problem(row["_where"], f"unexpected question {row['question']!r}")
            continue
        if str(eval(expr)) != row["answer"]:  # expr is digits and + - * only (checked above)
            problem(row["_where"], f"answer {row['answer']} != {eval(expr)}")
    unique_ids(rows, "arithmetic")


def check_sizes() -> None:
    total = 0
    for root, _dirs, files in os.walk(HERE):
        if "__pycache__" in root:
            continue
        for name in files:
            if name != "commerce.db":
                total += os.path.getsize(os.path.join(root, name))
    db = os.path.getsize(os.path.join(HERE, "commerce.db"))
    if total >= 1_000_000 or db >= 200_000:
        problem("experiments/data", f"too big: {total} B of files + {db} B db")
    print(f"size: {total} B of files besides commerce.db ({db} B)")


def main() -> int:
    con = sqlite3.connect(f"file:{os.path.join(HERE, 'commerce.db')}?mode=ro", uri=True)
    check_pairs(con)
    check_headlines()
    check_posts()
    check_arithmetic()
    check_sizes()
    for line in PROBLEMS:
        print(line)
    print("ok" if not PROBLEMS else f"{len(PROBLEMS)} problem(s)")
    return 1 if PROBLEMS else 0


if __name__ == "__main__":
    sys.exit(main())
