"""Build a real-looking CX survey export from the labelled public data, for demos and batch benchmarks.

The comments are real (ABSITA hotel reviews and ATE-ABSITA product reviews in
Italian; SemEval restaurant reviews and airline tweets in English).  The survey
columns around them are *simulated*: an NPS answer drawn from the comment's gold
label (ATE stars where there are stars), a CSAT answer, a date over six months,
a channel and a region.  So KPIs computed on it are plausible, not real.

    python -m benchmarks.make_survey --rows 20000 --out var/survey_20k.csv
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import random
from pathlib import Path

from voce.data.datasets import load_absita, load_airline, load_ate_absita, load_semeval_restaurants

CHANNELS = ["web", "app", "store", "call center", "email", "chat"]
REGIONS = ["nord", "centro", "sud", "isole"]
_NPS_BY_LABEL = {"positive": (8, 10), "neutral": (5, 8), "negative": (0, 5), "mixed": (4, 8)}
_NPS_BY_STARS = {5: (9, 10), 4: (7, 9), 3: (4, 7), 2: (1, 5), 1: (0, 3)}


def build(rows: int, seed: int = 7, data_dir: Path | None = None, missing_nps: float = 0.1) -> list[dict[str, str]]:
    rng = random.Random(seed)
    pool = []
    for ex in load_absita(data_dir) + load_semeval_restaurants(data_dir) + load_airline(data_dir) + load_ate_absita(
        "train", data_dir
    ):
        if ex.stars:
            lo, hi = _NPS_BY_STARS[max(1, min(5, ex.stars))]
        elif ex.sentiment:
            lo, hi = _NPS_BY_LABEL.get(ex.sentiment, (5, 8))
        else:
            continue
        pool.append((ex.text, ex.language, lo, hi))
    rng.shuffle(pool)
    start = dt.date(2026, 4, 1)
    out = []
    for i in range(rows):
        text, lang, lo, hi = pool[i % len(pool)]
        nps = rng.randint(lo, hi)
        csat = max(1, min(5, round(1 + nps * 0.4 + rng.gauss(0, 0.6))))
        day = start + dt.timedelta(days=rng.randrange(183))
        out.append({
            "respondent_id": f"R{i + 1:06d}",
            "data": day.strftime("%d/%m/%Y"),
            "canale": rng.choice(CHANNELS),
            "regione": rng.choice(REGIONS),
            "lingua": lang,
            "nps": "" if rng.random() < missing_nps else str(nps),
            "csat": str(csat),
            "commento": text,
        })
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--out", type=Path, default=Path("var/survey_20k.csv"))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--data-dir", type=Path, default=None)
    args = ap.parse_args()
    rows = build(args.rows, args.seed, args.data_dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter=";")
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} rows -> {args.out}")


if __name__ == "__main__":
    main()
