"""Draw the texts of the real-text CX corpus (seeded and reproducible): ``python -m voce.data.sample_realcx``.

A random sample per source, plus a deliberate keyword search for the touchpoints that are rare in real feedback
(advertising, brochures, trade fairs, promoters, social media, chat, email, app, store, store staff, packaging) so
that each gets the real examples the data holds, plus every telco and utility tweet of the brand-complaints corpus
(for the journey-stage taxonomies).  Each text records how it was drawn (``stratum``), so metrics can be reported
on the random part alone.  Writes ``sample.jsonl`` (no texts: they stay in the shared data folder) and, for the
annotators, batch files with texts to a folder outside the repository.
"""
from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

from voce.data.datasets import load_all
from voce.data.unlabelled import UNLABELLED, load_unlabelled

SEED = 20261204
#: rare touchpoints: regexes over Italian and English (precision is not needed: annotators decide)
RARE = {
    "advertising": r"pubblicit|\bspot\b|\bbanner\b|cartellon|\bads?\b|\badvert|commercials?\b|billboard",
    "brochure": r"volantin|brochure|catalog|depliant|opuscol|\bflyers?\b|leaflet|pamphlet",
    "trade_fair": r"\bfier[ae]\b|\bstand\b|\bexpo\b|trade ?show|\bbooth\b|exhibition|salone del",
    "in_store_promoter": r"\bpromoter|\bhostess|campion(?:e|i|cin[oi])\s+(?:omaggio|gratuit)|\bomaggio\b|degustazion"
                         r"|free samples?|\bsamples?\b|tasting|demonstrat",
    "social_media": r"facebook|instagram|twitter|\btweet|tiktok|social media|\bsocial\b|\bdms?\b|direct message|linkedin",
    "chat_chatbot": r"\bchat|chatbot|\bbot\b|whatsapp|messenger|assistente virtuale|virtual assistant",
    "email": r"e-?mail|\bmail\b|\bpec\b|posta elettronica",
    "mobile_app": r"\bapps?\b|\bapplicazion",
    "store_staff": r"commess|cassier|\baddett|\bclerks?\b|cashier|sales ?(?:person|man|woman|assistant|associate)"
                   r"|shop assistant|store (?:staff|employee|manager)",
    "store": r"\bnegozi|punt[oi] vendita|\bfilial|\bsportell|supermercat|\bin[- ]store\b|\bstores?\b"
             r"|\bbranch(?:es)?\b|\bshops?\b",
    "packaging": r"imballag|imballo|confezion|scatol|packaging|\bbox(?:es)?\b|wrapping",
}  # fmt: skip
#: random texts per source, and the cap on rare-keyword texts per (source, touchpoint)
RANDOM = {"it_pa_tweets_uniba": 760, "it_amazon_gdmr": 299, "ate_absita2020": 330, "absita2018": 140,
          "en_brand_complaint_tweets": 450, "en_ba_airline_reviews": 230, "twitter_airline_en": 280,
          "semeval2016_restaurants_en": 60, "sentipolc2016": 0}  # fmt: skip
RARE_CAP = 30
RARE_CAP_BY_SOURCE = {"sentipolc2016": 12, "absita2018": 20, "twitter_airline_en": 20, "semeval2016_restaurants_en": 10,
                      "en_ba_airline_reviews": 10}  # fmt: skip
DOMAIN = {"it_pa_tweets_uniba": "public_service", "it_amazon_gdmr": "ecommerce", "en_ba_airline_reviews": "airline",
          "ate_absita2020": "ecommerce", "absita2018": "hotel", "twitter_airline_en": "airline",
          "semeval2016_restaurants_en": "restaurant", "sentipolc2016": "tweets"}  # fmt: skip
JOURNEY_BY_DOMAIN = {"public_service": "utility", "ecommerce": "ecommerce", "airline": "airline", "retail": "ecommerce",
                     "apparel": "ecommerce", "electronics": "ecommerce"}  # fmt: skip
TELCO = {"@ee", "@virginmedia", "@vodafonein", "@threeuksupport", "@btcare", "@safaricom_care", "@comcastcares",
         "@directvservice", "@bt_uk", "@directv", "@comcast", "@xfinity", "@threeuk", "@aolsupporthelp", "@aol"}
UTILITY = {"@nationalgridus", "@georgiapower", "@kenyapower_care", "@kenyapower"}
AIRLINES = {"@jetblue", "@airasiasupport", "@delta", "@united", "@british_airways", "@americanair", "@southwestair"}
TELCO_UTILITY_HANDLES = ("@ee", "@virginmedia", "@vodafonein", "@threeuksupport", "@btcare", "@safaricom_care",
                         "@comcastcares", "@directvservice", "@bt_uk", "@directv", "@comcast", "@xfinity", "@threeuk",
                         "@nationalgridus", "@georgiapower", "@kenyapower_care", "@kenyapower")  # fmt: skip


def _pool(data_dir: Path | None) -> dict[str, list[dict[str, Any]]]:
    """Every candidate text per source, in file order (the order the seeded draw depends on)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name in UNLABELLED:
        rows = load_unlabelled(name, data_dir)
        out[name] = [{"uid": t.uid, "source": name, "lang": t.language, "text": t.text, "group": t.uid.split(":", 1)[1],
                      "domain": t.meta.get("domain") or DOMAIN.get(name, "")} for t in rows]  # fmt: skip
    public = load_all(data_dir)
    for name, rows in public.items():
        seen = [e for e in rows if "~" not in e.uid]  # a duplicated airline tweet is drawn once
        out[name] = [{"uid": e.uid, "source": name, "lang": e.language, "text": e.text, "group": e.group,
                      "domain": DOMAIN[name]} for e in seen]  # fmt: skip
    return out


def draw_sample(data_dir: Path | None = None) -> list[dict[str, Any]]:
    """The annotated corpus's texts (with text), in annotation order."""
    pools = _pool(data_dir)
    order = ["it_pa_tweets_uniba", "it_amazon_gdmr", "en_brand_complaint_tweets", "en_ba_airline_reviews",
             "ate_absita2020", "absita2018", "twitter_airline_en", "semeval2016_restaurants_en", "sentipolc2016"]
    rng = random.Random(SEED)
    chosen: dict[str, dict[str, Any]] = {}
    for src, n in RANDOM.items():
        for r in rng.sample(pools[src], min(n, len(pools[src]))):
            chosen[r["uid"]] = {**r, "stratum": "random"}
    for cls, pat in RARE.items():
        rx = re.compile(pat, re.I)
        for src in order:
            hits = [r for r in pools[src] if rx.search(r["text"]) and r["uid"] not in chosen and len(r["text"]) <= 3000]
            rng.shuffle(hits)
            for r in hits[: min(RARE_CAP, RARE_CAP_BY_SOURCE.get(src, RARE_CAP))]:
                chosen[r["uid"]] = {**r, "stratum": f"keyword:{cls}"}
    for r in pools["en_brand_complaint_tweets"]:
        if r["uid"] not in chosen and any(h in r["text"].lower() for h in TELCO_UTILITY_HANDLES):
            chosen[r["uid"]] = {**r, "stratum": "domain:telco_utility"}
    out = []
    for r in chosen.values():
        journey = JOURNEY_BY_DOMAIN.get(r["domain"], "")
        if r["source"] == "en_brand_complaint_tweets":
            handles = {h.lower() for h in re.findall(r"@\w+", r["text"])}
            journey = "telco" if handles & TELCO else "utility" if handles & UTILITY else (
                "airline" if handles & AIRLINES else journey)
        out.append({**r, "journey": journey})
    out.sort(key=lambda r: r["uid"])
    rng.shuffle(out)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m voce.data.sample_realcx", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="sample.jsonl to write (no texts)")
    ap.add_argument("--batches", type=Path, help="folder OUTSIDE the repository for annotator batch files (texts)")
    ap.add_argument("--data-dir", type=Path, default=None)
    args = ap.parse_args(argv)
    rows = draw_sample(args.data_dir)
    keep = ("uid", "source", "group", "lang", "domain", "journey", "stratum")
    with args.out.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps({k: r[k] for k in keep}, ensure_ascii=False) + "\n")
    if args.batches:
        args.batches.mkdir(parents=True, exist_ok=True)
        batch: list[dict[str, Any]] = []
        size, k = 0, 0
        for i, r in enumerate(rows):
            batch.append({key: r[key] for key in ("uid", "lang", "source", "domain", "journey", "text")})
            size += len(r["text"])
            if size > 34000 or len(batch) >= 160 or i == len(rows) - 1:
                k += 1
                (args.batches / f"b{k:02d}.jsonl").write_text(
                    "".join(json.dumps(b, ensure_ascii=False) + "\n" for b in batch), "utf-8")
                batch, size = [], 0
    print(len(rows), Counter(r["lang"] for r in rows), Counter(r["stratum"].split(":")[0] for r in rows))


if __name__ == "__main__":
    main()
