#!/usr/bin/env python3
"""Write fictional daily financial headlines and next-day outcomes.

    python3 experiments/data/make_headlines.py

headlines/YYYYMMDD.jsonl for 20250802..20250807: {"id", "date", "ticker", "text"}
outcomes/YYYYMMDD.jsonl  for 20250802..20250806: {"date", "ticker", "close", "next_date",
    "next_close", "move_pct"}, one row per ticker in that day's headlines, sorted by ticker.
20250807 has headlines but no outcomes on purpose (its next day has not happened yet), so a
daily loop can be tested for "missing outcomes". Same shapes as ../shared/data/stocknet.

Companies, tickers, headlines and prices are all invented (any match with a real symbol is an
accident). A day's headlines nudge its tickers' next-day move (good news -> up on average),
so a forecaster can beat chance. Deterministic; Python 3.11 standard library only.
Written for this project (Apache-2.0).
"""

import datetime as dt
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 802
FIRST_DAY = dt.date(2025, 8, 2)
HEADLINE_DAYS = 6  # 20250802..20250807
OUTCOME_DAYS = 5  # 20250802..20250806
PER_DAY = 8

# ticker, company, opening price
COMPANIES = [
    ("AVRX", "Avarex Therapeutics", 38.20),
    ("BLMC", "Bluemont Capital", 61.75),
    ("CDRL", "Cedarline Foods", 44.10),
    ("HLXS", "Helix Systems", 212.40),
    ("KSTR", "Kestrel Airlines", 17.85),
    ("MRDN", "Meridian Retail Group", 93.60),
    ("NRWD", "Northward Energy", 72.30),
    ("PLSR", "Pulsar Cloud", 156.90),
    ("HBLN", "Harborline Logistics", 28.40),
    ("VRDA", "Verdant Motors", 24.65),
]

POSITIVE = [
    "{name} (${t}) beats second-quarter estimates as revenue climbs {p}%",
    "{name} (${t}) raises full-year guidance on stronger demand",
    "{name} (${t}) wins ${b} billion multi-year contract",
    "Analysts upgrade {name} (${t}) to buy, citing margin recovery",
    "{name} (${t}) announces ${b} billion share buyback",
    "{name} (${t}) shares jump premarket after regulator approves key filing",
    "{name} (${t}) signs long-term supply deal with a major customer",
    "{name} (${t}) reports record quarterly volumes, up {p}% year over year",
    "{name} (${t}) raises dividend by {p}%",
]
NEGATIVE = [
    "{name} (${t}) misses earnings forecasts; shares slide after hours",
    "{name} (${t}) cuts outlook, blaming weaker consumer demand",
    "{name} (${t}) recalls {n} thousand units over safety concerns",
    "Regulators open probe into {name} (${t}) accounting practices",
    "{name} (${t}) CFO resigns unexpectedly",
    "Analysts downgrade {name} (${t}) to sell on slowing growth",
    "{name} (${t}) delays flagship launch to next year",
    "Strike at {name} (${t}) main facility halts operations",
    "{name} (${t}) quarterly margin shrinks {p}% on rising costs",
]
NEUTRAL = [
    "{name} (${t}) to present at an industry conference next week",
    "{name} (${t}) names new head of investor relations",
    "{name} (${t}) completes previously announced debt refinancing",
    "{name} (${t}) schedules second-quarter earnings call for Thursday",
    "{name} (${t}) opens new regional office in Denver",
    "{name} (${t}) trading volume in line with its 30-day average",
    "{name} (${t}) reaffirms guidance ahead of investor day",
]
POLARITY = {1: POSITIVE, -1: NEGATIVE, 0: NEUTRAL}


def day_str(d: dt.date) -> str:
    return d.strftime("%Y%m%d")


def main() -> None:
    rng = random.Random(SEED)
    days = [FIRST_DAY + dt.timedelta(days=k) for k in range(HEADLINE_DAYS)]
    closes = {}  # (day, ticker) -> close
    for t, _, p in COMPANIES:
        closes[(days[0], t)] = p
    headlines_by_day = {}
    used_text = set()
    for k, day in enumerate(days):
        tickers = rng.sample(COMPANIES, rng.choice([5, 6]))
        picks = list(tickers) + [rng.choice(tickers) for _ in range(PER_DAY - len(tickers))]
        rows, signal = [], {t: 0 for t, _, _ in tickers}
        for j, (t, name, _) in enumerate(picks):
            polarity = rng.choices([1, -1, 0], weights=[4, 3, 3])[0]
            while True:
                text = rng.choice(POLARITY[polarity]).format(
                    name=name, t=t, p=rng.randint(3, 24), b=rng.choice(["1.2", "2.5", "3", "4.8"]),
                    n=rng.randint(12, 240),
                )
                if text not in used_text:
                    break
            used_text.add(text)
            signal[t] += polarity
            rows.append({"id": f"{day_str(day)}-{j:03d}", "date": day_str(day), "ticker": t, "text": text})
        headlines_by_day[day] = rows
        # Next-day close for every company: news drift plus noise, 2-decimal prices.
        nxt = day + dt.timedelta(days=1)
        for t, _, _ in COMPANIES:
            drift = 1.4 * max(-2, min(2, signal.get(t, 0)))
            move = drift + rng.gauss(0.0, 1.1)
            closes[(nxt, t)] = round(closes[(day, t)] * (1 + move / 100.0), 2)

    write_dir(os.path.join(HERE, "headlines"), {d: r for d, r in headlines_by_day.items()})
    outcomes = {}
    for day in days[:OUTCOME_DAYS]:
        nxt = day + dt.timedelta(days=1)
        rows = []
        for t in sorted({r["ticker"] for r in headlines_by_day[day]}):
            close, next_close = closes[(day, t)], closes[(nxt, t)]
            rows.append(
                {
                    "date": day_str(day),
                    "ticker": t,
                    "close": close,
                    "next_date": day_str(nxt),
                    "next_close": next_close,
                    "move_pct": round(100.0 * (next_close - close) / close, 4),
                }
            )
        outcomes[day] = rows
    write_dir(os.path.join(HERE, "outcomes"), outcomes)


def write_dir(folder: str, by_day: dict) -> None:
    os.makedirs(folder, exist_ok=True)
    for day, rows in by_day.items():
        path = os.path.join(folder, f"{day_str(day)}.jsonl")
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"wrote {os.path.relpath(path, HERE)}: {len(rows)} rows")


if __name__ == "__main__":
    main()
