"""The unlabelled real customer texts in ``<data dir>/unlabelled/<folder>/data.csv``.

They are annotated by guideline (:mod:`voce.data.realcx`) and mined for weak labels; the texts are read from the
shared data folder at run time and never committed.  Each folder's ``SOURCE.txt`` says where the texts come from
and under which licence.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from voce.data.datasets import resolve_data_dir

PA_TWEETS = "it_pa_tweets_uniba"
AMAZON_IT = "it_amazon_gdmr"
BRAND_TWEETS = "en_brand_complaint_tweets"
BA_REVIEWS = "en_ba_airline_reviews"

#: every unlabelled folder; also ``UnlabelledText.source``
UNLABELLED: tuple[str, ...] = (PA_TWEETS, AMAZON_IT, BRAND_TWEETS, BA_REVIEWS)


@dataclass(frozen=True, slots=True)
class UnlabelledText:
    """One real text: ``uid`` is ``<folder>:<id>``, the key labels are committed under."""

    uid: str
    source: str
    text: str
    language: str
    #: the source's own columns (stars, domain, sentiment...), as strings
    meta: dict[str, str] = field(default_factory=dict)


def load_unlabelled(name: str, data_dir: str | os.PathLike[str] | None = None) -> list[UnlabelledText]:
    """Every row of one folder's ``data.csv`` (UTF-8; columns id, text, source, lang plus the source's own)."""
    if name not in UNLABELLED:
        raise KeyError(f"unknown unlabelled folder {name!r}; known: {', '.join(UNLABELLED)}")
    path = Path(resolve_data_dir(data_dir)) / "unlabelled" / name / "data.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; point VOCE_TRAIN_DATA_DIR at the shared data folder")
    out = []
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            meta = {k: v for k, v in row.items() if k not in ("id", "text", "source", "lang") and v is not None}
            out.append(UnlabelledText(f"{name}:{row['id']}", name, row["text"], row["lang"], meta))
    return out
