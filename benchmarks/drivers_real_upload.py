"""Drivers on a real upload, before and after the issue-17 rules (catch-all apart, minimum support, one source).

``build`` writes a 408-row ``;``-separated Italian survey export from real texts in ``../shared/data`` (100 Amazon.it
reviews, 100 Booking hotel sentences from ABSITA, 100 tweets to INPS/INAIL/Protezione Civile with all 15 to
Protezione Civile, 60 British Airways reviews without a score, 40 airline tweets, 8 blank answers). The scores are
each source's own human labels mapped onto 0-10 (stars 5->10, 4->8, 3->6, 2->3, 1->1; sentiment pos->9, neu->7,
neg->3, mixed->6); dates are spread evenly over February-March 2026 (metadata only, so a comparison of the two
months has no real change to find). The file holds the texts: keep it out of the repository.

``measure`` reads an analysed batch (``voce batch submit FILE --wait`` with the mapping below) and prints the
drivers under the previous rule (every BH-significant theme, the catch-all included) and the current one, and
February against March.

    python -m benchmarks.drivers_real_upload build /tmp/sondaggio.csv
    VOCE_DATA_DIR=/tmp/d voce batch submit /tmp/sondaggio.csv --wait --mapping \\
        '{"text":"Commento","id":"ID","date":"Data","nps":"Voto","channel":"Canale","segments":["Fonte"]}'
    python -m benchmarks.drivers_real_upload measure sqlite:////tmp/d/voce.db BATCH_ID
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import random
from pathlib import Path

DATA = Path(os.environ.get("VOCE_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))
_STARS = {5: 10, 4: 8, 3: 6, 2: 3, 1: 1}
_SENT = {"pos": 9, "positive": 9, "neu": 7, "neutral": 7, "neg": 3, "negative": 3, "mixed": 6}
_ASPECTS = ("cleanliness", "comfort", "amenities", "staff", "value", "wifi", "location", "other")


def _read(path: Path, delimiter: str = ",") -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter=delimiter))


def _agency(text: str) -> str:
    t = text.lower()
    if "protezione" in t or "dpcgov" in t:
        return "Protezione Civile"
    return "INAIL" if "inail" in t else "INPS"


def build(out: Path, seed: int = 17) -> int:
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []

    def add(text: str, score: int | None, source: str, channel: str) -> None:
        rows.append({"Commento": " ".join(text.split()), "Voto": "" if score is None else str(score), "Fonte": source,
                     "Canale": channel})

    amazon = _read(DATA / "unlabelled/it_amazon_gdmr/data.csv")
    rng.shuffle(amazon)
    for r in amazon[:100]:
        add(r["text"], _STARS[int(float(r["stars"]))], "Amazon.it", "web")
    hotel = _read(DATA / "absita2018/train.csv", ";")
    rng.shuffle(hotel)
    for r in hotel[:100]:
        pos = any(r[f"{a}_positive"] == "1" for a in _ASPECTS)
        neg = any(r[f"{a}_negative"] == "1" for a in _ASPECTS)
        add(r["sentence"], 6 if pos and neg else 9 if pos else 3 if neg else 7, "Booking", "web")
    tweets = _read(DATA / "unlabelled/it_pa_tweets_uniba/data.csv")
    rng.shuffle(tweets)
    civil = [r for r in tweets if _agency(r["text"]) == "Protezione Civile"][:15]
    others = [r for r in tweets if _agency(r["text"]) != "Protezione Civile"][:85]
    for r in civil + others:
        add(r["text"], _SENT.get(r["sentiment_final"], 7), "Twitter " + _agency(r["text"]), "social")
    ba = _read(DATA / "unlabelled/en_ba_airline_reviews/data.csv")
    rng.shuffle(ba)
    for r in ba[:60]:
        add(r["text"][:1500], None, "Skytrax", "web")
    airline = _read(DATA / "twitter_airline_en/train.csv")
    rng.shuffle(airline)
    for r in airline[:40]:
        add(r["text"], _SENT[r["airline_sentiment"]], "Twitter airline", "social")
    for _ in range(8):
        add("", None, "Amazon.it", "web")
    rng.shuffle(rows)
    start = dt.date(2026, 2, 1)
    with out.open("w", encoding="utf-8-sig", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["ID", "Data", "Commento", "Voto", "Fonte", "Canale"], delimiter=";")
        w.writeheader()
        for i, r in enumerate(rows):
            day = start + dt.timedelta(days=i * 58 // len(rows))
            w.writerow({"ID": f"Q{i:04d}", "Data": day.strftime("%d/%m/%Y"), **r})
    return len(rows)


def measure(database_url: str, batch_id: str) -> None:
    from voce.service import analytics
    from voce.service.batches import rows
    from voce.service.batches.store import BatchStore

    facts = rows.load_facts(BatchStore.open(database_url), batch_id)
    before = analytics.batch_kpis(facts, None, catch_all=(), min_driver_support=0)
    after = analytics.batch_kpis(facts, None)
    for name, report, chosen in (("before", before, "significant"), ("after", after, "driver")):
        themes = report.topics + ([report.unclassified] if report.unclassified else [])
        drivers = sorted((t for t in themes if getattr(t, chosen)), key=lambda t: -abs(t.impact or 0.0))
        print(f"{name}: {len(drivers)} drivers over {report.nps.responses} NPS answers")
        for t in drivers:
            c = t.concentration
            source = f" ONE SOURCE {c.column or 'channel'}={c.value} {c.share:.0%}" if c else ""
            print(f"  {t.id:24s} impact {t.impact:+6.2f} n={t.nps_responses:3d}{' CATCH-ALL' if t.id == 'other' else ''}"
                  f"{source}")
        top = drivers[:5]
        print(f"  top 5: catch-all {sum(t.id == 'other' for t in top)}, one source "
              f"{sum(t.concentration is not None for t in top)}, under {after.min_driver_support} answers "
              f"{sum(t.nps_responses < after.min_driver_support for t in top)}")
    c = analytics.compare(facts, facts, analytics.Filters(period="2026-02"), analytics.Filters(period="2026-03"))
    raw = sum(1 for t in c.topics + c.touchpoints for d in (t.share, t.net_sentiment, t.nps)
              if d.p_value is not None and d.p_value < 0.05)
    flagged = sum(1 for t in c.topics + c.touchpoints for d in (t.share, t.net_sentiment, t.nps) if d.significant)
    nps = c.kpis["nps"]
    print(f"February vs March: {c.tests} tests, {raw} topic/touchpoint tests with raw p < 0.05, {flagged} significant "
          f"after BH; NPS {nps.diff:+.2f} [{nps.ci_low:+.2f}; {nps.ci_high:+.2f}] p = {nps.p_value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("out", type=Path)
    m = sub.add_parser("measure")
    m.add_argument("database_url")
    m.add_argument("batch_id")
    args = parser.parse_args()
    if args.command == "build":
        print(build(args.out), "rows written to", args.out)
    else:
        measure(args.database_url, args.batch_id)


if __name__ == "__main__":
    main()
