"""Typed loaders for the five labelled public datasets Voce trains and is checked on.

Every loader turns one dataset's own format into a list of :class:`Example` records
that share one vocabulary, so that training code never has to know whether a label
came from a CSV flag, an XML attribute or a star rating.  The raw per-dataset labels
stay in ``Example.raw`` because the official metrics (``eval.metrics``) are defined on
them, not on our unified labels.

Where the data lives
    Never in the repository (the licences are research / non-commercial and the
    project is scored on held-out data of the same kinds).  :func:`resolve_data_dir`
    picks, in order: the ``data_dir`` argument, the ``VOCE_TRAIN_DATA_DIR``
    environment variable, ``<repo root>/../shared/data``.

Unknown is not negative
    ``None`` always means "this dataset does not tell us", never "no".  For topics,
    ``None`` = not annotated for topics, while ``{}`` = annotated and no topic applies.
    Heads must mask ``None`` rows out of the loss rather than treating them as
    negatives; that is the whole reason for the distinction.

Sentence sentiment from aspect labels (ABSITA, SemEval, ATE_ABSITA)
    ``any positive + any negative = mixed``; only positive = positive; only
    negative = negative; opinions present but none polarised (ABSITA presence with
    no flag, SemEval ``neutral``, ATE ``[0, 0]``) = neutral; no opinion at all =
    ``None``.  A sentence without annotated opinions is not evidence of a neutral
    sentence (ABSITA/SemEval annotators only marked opinions about the target
    entity), so we do not guess.  The same rule combines several opinions that land
    on one Voce topic (:func:`combine_polarities`).

NPS-detractor proxy (``nps_detractor``)
    There is no real 0-10 NPS answer with text in these data, so we use proxies and
    say so in every model card:

    * ``ate_absita2020``: stars 1-3 -> 1 (detractor), 4-5 -> 0.  Stretching the
      1-5 star scale linearly onto NPS's 0-10 gives 1->0, 2->2.5, 3->5, 4->7.5,
      5->10: 5 stars is a promoter (9-10), 4 a passive (7-8) and 3 or fewer a
      detractor (0-6).  Passives are not detractors in NPS, so 4 joins 5 on the
      0 side.  The positives are rare (1-3 stars: 365 of 3,054 train reviews,
      12 %); the detractor head should cope with that imbalance (class weights)
      rather than move the cut into the passives.
    * ``twitter_airline_en``: negative -> 1, positive -> 0, neutral -> ``None``
      (a neutral tweet carries no verdict about the airline).  Weak proxy: a
      complaint tweet is not a survey answer.
    * SENTIPOLC, ABSITA, SemEval: ``None`` (no verdict about a provider).

Text normalisation
    Tweets (SENTIPOLC, airline) arrive HTML-escaped (``&amp;``, ``&lt;3``, even
    double-escaped ``&amp;#039;``); we unescape them because the service sees
    real characters.  The original string stays in ``raw["text_original"]``.
    Review texts are left untouched so that character spans stay valid.
"""

from __future__ import annotations

import csv
import html
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Sentiment = Literal["positive", "neutral", "negative", "mixed"]
#: topic polarity uses the same four values as sentence sentiment
Polarity = Sentiment
Language = Literal["it", "en"]
AteSplit = Literal["train", "dev"]

SENTIPOLC = "sentipolc2016"
ABSITA = "absita2018"
SEMEVAL = "semeval2016_restaurants_en"
AIRLINE = "twitter_airline_en"
ATE_ABSITA = "ate_absita2020"

#: every dataset name; also its folder under the data dir and ``Example.source``
DATASETS: tuple[str, ...] = (SENTIPOLC, ABSITA, SEMEVAL, AIRLINE, ATE_ABSITA)

#: files each dataset reads, relative to the data dir (also what gets fingerprinted)
DATASET_FILES: Mapping[str, tuple[str, ...]] = {
    SENTIPOLC: ("sentipolc2016/train.csv",),
    ABSITA: ("absita2018/train.csv",),
    SEMEVAL: ("semeval2016_restaurants_en/train.xml",),
    AIRLINE: ("twitter_airline_en/train.csv",),
    ATE_ABSITA: ("ate_absita2020/train.ndjson", "ate_absita2020/dev.ndjson"),
}

DATA_DIR_ENV = "VOCE_TRAIN_DATA_DIR"

SENTIMENTS: tuple[Sentiment, ...] = ("positive", "neutral", "negative", "mixed")

#: ABSITA 2018 aspect columns, in file order (the order of ``absita_flag_matrix``)
ABSITA_ASPECTS: tuple[str, ...] = (
    "cleanliness",
    "comfort",
    "amenities",
    "staff",
    "value",
    "wifi",
    "location",
    "other",
)

#: ABSITA aspect -> Voce topic id.  One to one; ``value`` is the price/quality ratio
#: ("rapporto qualità prezzo") and ``wifi`` is the only connectivity aspect.
ABSITA_TOPIC_MAP: Mapping[str, str] = {
    "cleanliness": "cleanliness",
    "comfort": "comfort",
    "amenities": "amenities",
    "staff": "staff",
    "value": "price_value",
    "wifi": "connectivity",
    "location": "location",
    "other": "other",
}

#: SemEval-2016 restaurant ENTITY#ATTRIBUTE -> Voce topic id.  Food and drinks are the
#: restaurant's products, so their QUALITY / STYLE_OPTIONS become product quality /
#: product range; every PRICES attribute is price/value.  All 12 categories of the
#: restaurant domain are covered; an unknown category raises instead of being dropped.
SEMEVAL_TOPIC_MAP: Mapping[str, str] = {
    "FOOD#QUALITY": "product_quality",
    "DRINKS#QUALITY": "product_quality",
    "FOOD#STYLE_OPTIONS": "product_range",
    "DRINKS#STYLE_OPTIONS": "product_range",
    "FOOD#PRICES": "price_value",
    "DRINKS#PRICES": "price_value",
    "RESTAURANT#PRICES": "price_value",
    "SERVICE#GENERAL": "staff",
    "AMBIENCE#GENERAL": "ambience",
    "LOCATION#GENERAL": "location",
    "RESTAURANT#GENERAL": "other",
    "RESTAURANT#MISCELLANEOUS": "other",
}

#: Airline ``negativereason`` -> Voce topic id (``None``: annotated, but no topic).
#: Reasons exist only on negative tweets, so every mapped topic is negative.
AIRLINE_TOPIC_MAP: Mapping[str, str | None] = {
    "Customer Service Issue": "customer_service",
    "Late Flight": "delays_cancellations",
    "Cancelled Flight": "delays_cancellations",
    "Lost Luggage": "luggage",
    "Damaged Luggage": "luggage",
    "Flight Booking Problems": "ordering_booking",
    "Flight Attendant Complaints": "staff",
    "longlines": "waiting_time",
    "Bad Flight": "comfort",
    "Can't Tell": None,
}

#: topics each dataset annotates exhaustively: its rows are negatives for these and only these
ANNOTATED_TOPICS: Mapping[str, frozenset[str]] = {
    ABSITA: frozenset(ABSITA_TOPIC_MAP.values()),
    SEMEVAL: frozenset(SEMEVAL_TOPIC_MAP.values()),
    AIRLINE: frozenset(t for t in AIRLINE_TOPIC_MAP.values() if t is not None),
}

#: SENTIPOLC (opos, oneg) -> sentiment
SENTIPOLC_SENTIMENT: Mapping[tuple[int, int], Sentiment] = {
    (1, 0): "positive",
    (0, 1): "negative",
    (0, 0): "neutral",
    (1, 1): "mixed",
}

#: ATE_ABSITA stars at or below this are detractors (see module docstring)
ATE_DETRACTOR_MAX_STARS = 3

_AIRLINE_SENTIMENTS: Mapping[str, Sentiment] = {
    "positive": "positive",
    "neutral": "neutral",
    "negative": "negative",
}
_SEMEVAL_POLARITIES: frozenset[str] = frozenset({"positive", "neutral", "negative"})


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled text in the shared vocabulary of every Voce training task.

    Frozen so that a loaded corpus cannot be edited by accident between the split
    and the metrics; the dict fields make it unhashable, so key on ``uid``.
    """

    #: dataset name (one of :data:`DATASETS`)
    source: str
    #: globally unique, stable id: ``"<source>:<native id>"``
    uid: str
    text: str
    language: Language
    #: split-grouping key: rows sharing it must land on the same side of a split
    group: str
    #: sentence sentiment; ``None`` = unknown
    sentiment: Sentiment | None = None
    #: Voce topic id -> polarity; ``None`` = not topic-annotated, ``{}`` = no topic
    topics: dict[str, Polarity] | None = None
    #: 1-5 star rating (ate_absita2020 only)
    stars: int | None = None
    #: 1 detractor / 0 not, from a proxy (see module docstring); ``None`` = unknown
    nps_detractor: int | None = None
    #: SENTIPOLC irony flag
    irony: int | None = None
    #: dataset-specific labels needed for the official metrics
    raw: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers


def annotated_topics(examples: Iterable[Example]) -> dict[str, frozenset[str]]:
    """Topics each source annotates: the maps above where known, else the topics seen in its rows.

    A row is a negative example of a topic only if its source annotates that topic: a hotel-review sentence
    says nothing about whether it mentions flight delays, because nobody labelled delays in that dataset.
    """
    seen: dict[str, set[str]] = {}
    for e in examples:
        if e.topics is not None:
            seen.setdefault(e.source, set()).update(e.topics)
    return {src: ANNOTATED_TOPICS.get(src, frozenset(topics)) for src, topics in seen.items()}


def repo_root() -> Path:
    """The repository root, found from this file so it works from any cwd."""
    return Path(__file__).resolve().parents[1]


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Data folder: the argument, else ``$VOCE_TRAIN_DATA_DIR``, else ../shared/data.

    Resolved lazily (never at import) so tests and CI can point elsewhere.
    """
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    return repo_root().parent / "shared" / "data"


def dataset_paths(
    data_dir: str | os.PathLike[str] | None = None,
    datasets: Iterable[str] = DATASETS,
) -> list[Path]:
    """Paths of every file the loaders read, for the data fingerprints in manifests."""
    root = resolve_data_dir(data_dir)
    return [root / rel for name in datasets for rel in DATASET_FILES[name]]


def _require(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass data_dir=... or set {DATA_DIR_ENV} to the shared data folder")
    return path


def combine_polarities(polarities: Iterable[str]) -> Polarity | None:
    """Fold opinion polarities into one: the rule shared by sentences and topics.

    Positive and negative evidence together is ``mixed`` (a ``mixed`` input counts as
    both); ``neutral`` only survives when nothing is polarised; no input -> ``None``.
    """
    pos = neg = seen = False
    for p in polarities:
        if p not in SENTIMENTS:
            raise ValueError(f"unknown polarity {p!r}")
        seen = True
        pos = pos or p in ("positive", "mixed")
        neg = neg or p in ("negative", "mixed")
    if pos and neg:
        return "mixed"
    if pos:
        return "positive"
    if neg:
        return "negative"
    return "neutral" if seen else None


def flags_to_polarity(positive: int, negative: int) -> Polarity:
    """ABSITA / ATE_ABSITA ``[pos, neg]`` flags: both = mixed, neither = neutral."""
    if positive and negative:
        return "mixed"
    if positive:
        return "positive"
    return "negative" if negative else "neutral"


def _map_topics(pairs: Iterable[tuple[str, str]]) -> dict[str, Polarity]:
    """Group (topic, polarity) pairs and combine the polarities of each topic."""
    grouped: dict[str, list[str]] = {}
    for topic, polarity in pairs:
        grouped.setdefault(topic, []).append(polarity)
    combined = {t: combine_polarities(ps) for t, ps in grouped.items()}
    return {t: p for t, p in sorted(combined.items()) if p is not None}


def _flag(value: str | int, where: str) -> int:
    """Parse a 0/1 flag strictly: a silent ``bool("0")`` would flip labels."""
    try:
        v = int(str(value).strip())
    except ValueError as exc:
        raise ValueError(f"{where}: expected a 0/1 flag, got {value!r}") from exc
    if v not in (0, 1):
        raise ValueError(f"{where}: expected a 0/1 flag, got {value!r}")
    return v


def _unescape_tweet(text: str) -> str:
    """Undo HTML escaping, at most twice: some tweets are double-escaped."""
    for _ in range(2):
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = unescaped
    return text


def _optional_float(value: str | None) -> float | None:
    value = (value or "").strip()
    return float(value) if value else None


# ------------------------------------------------------------------------- SENTIPOLC


def load_sentipolc(data_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    """SENTIPOLC 2016 tweets (it): polarity from ``opos``/``oneg``, irony from ``iro``.

    ``lpos``/``lneg`` (literal polarity, differs from overall on ironic tweets),
    ``subj`` and ``top`` are kept in ``raw``.  ``subj=1`` with ``00`` flags (504
    rows) is a subjective tweet without polarity; it is ``neutral`` here, as in the
    official polarity task.
    """
    path = _require(resolve_data_dir(data_dir) / DATASET_FILES[SENTIPOLC][0])
    out: list[Example] = []
    with path.open(encoding="utf-8", newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            where = f"{path.name}:{line}"
            flags = {k: _flag(row[k], f"{where} {k}") for k in ("subj", "opos", "oneg", "iro", "lpos", "lneg", "top")}
            tid = row["idtwitter"].strip()
            out.append(
                Example(
                    source=SENTIPOLC,
                    uid=f"{SENTIPOLC}:{tid}",
                    text=_unescape_tweet(row["text"]),
                    language="it",
                    group=tid,
                    sentiment=SENTIPOLC_SENTIMENT[(flags["opos"], flags["oneg"])],
                    topics=None,
                    irony=flags["iro"],
                    raw={"idtwitter": tid, **flags, "text_original": row["text"]},
                )
            )
    return out


# ---------------------------------------------------------------------------- ABSITA


def load_absita(data_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    """ABSITA 2018 hotel-review sentences (it): 8 aspects x presence/positive/negative.

    ``raw["aspects"][aspect] = {"presence", "positive", "negative"}`` as in the file
    (what the official ACD/ACP metrics need; see :func:`absita_flag_matrix`).
    Topics come from present aspects only; polarity flags without presence never
    occur in the training file and would be ignored.  A sentence with no aspect
    present gets ``topics={}`` (the annotation is exhaustive over the 8 aspects)
    but ``sentiment=None`` (no opinion annotated; do not guess).
    """
    path = _require(resolve_data_dir(data_dir) / DATASET_FILES[ABSITA][0])
    out: list[Example] = []
    with path.open(encoding="utf-8", newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh, delimiter=";"), start=2):
            where = f"{path.name}:{line}"
            sid = row["sentence_id"].strip()
            aspects = {
                a: {k: _flag(row[f"{a}_{k}"], f"{where} {a}_{k}") for k in ("presence", "positive", "negative")}
                for a in ABSITA_ASPECTS
            }
            present = {a: flags_to_polarity(f["positive"], f["negative"]) for a, f in aspects.items() if f["presence"]}
            out.append(
                Example(
                    source=ABSITA,
                    uid=f"{ABSITA}:{sid}",
                    text=row["sentence"],
                    language="it",
                    group=sid,
                    sentiment=combine_polarities(present.values()),
                    topics=_map_topics((ABSITA_TOPIC_MAP[a], p) for a, p in present.items()),
                    raw={"sentence_id": sid, "aspects": aspects},
                )
            )
    return out


def absita_flag_matrix(examples: Iterable[Example]) -> list[list[list[int]]]:
    """``(n, 8, 3)`` nested list of (presence, positive, negative) per ABSITA aspect.

    The input format of ``eval.metrics.absita_aspect_detection_f1`` (``[..., 0]``)
    and ``absita_aspect_polarity_f1``, in :data:`ABSITA_ASPECTS` order.
    """
    return [
        [[ex.raw["aspects"][a][k] for k in ("presence", "positive", "negative")] for a in ABSITA_ASPECTS]
        for ex in examples
    ]


# --------------------------------------------------------------------------- SemEval


def load_semeval_restaurants(
    data_dir: str | os.PathLike[str] | None = None,
) -> list[Example]:
    """SemEval-2016 Task 5 restaurant sentences (en), grouped by review id.

    ``raw["opinions"]`` keeps every ``Opinion`` (category, polarity, target with
    ``"NULL"`` -> ``None``, from, to) and ``raw["categories"]`` the sentence's
    category -> combined polarity (what slot 1 / slot 3 score).

    Decisions:

    * In-scope sentence without an ``Opinions`` element: ``topics={}``.  SemEval
      annotates every opinion about the reviewed restaurant, so no opinion means
      no category; in slot-1 scoring such a sentence is an empty gold set.
      Sentiment stays ``None`` (no opinion is not a neutral opinion).
    * ``OutOfScope="TRUE"`` sentences (an attribute of the *sentence*; 63 of
      them, none with opinions): annotators skipped them (e.g. a remark about
      another restaurant), so their topics are unknown, not absent:
      ``topics=None``, ``sentiment=None``, ``raw["out_of_scope"] = True``.  Count
      them as empty gold sets when comparing with published slot-1 numbers (the
      official files keep them).
    """
    path = _require(resolve_data_dir(data_dir) / DATASET_FILES[SEMEVAL][0])
    root = ET.parse(path).getroot()
    out: list[Example] = []
    for review in root.iter("Review"):
        rid = review.get("rid")
        if not rid:
            raise ValueError(f"{path.name}: Review without rid")
        for sentence in review.iter("sentence"):
            sid = sentence.get("id")
            if not sid:
                raise ValueError(f"{path.name}: sentence without id in review {rid}")
            out_of_scope = (sentence.get("OutOfScope") or "").upper() == "TRUE"
            opinions_el = sentence.find("Opinions")
            opinions: list[dict[str, Any]] = []
            for op in [] if opinions_el is None else opinions_el.iter("Opinion"):
                category, polarity = op.get("category", ""), op.get("polarity", "")
                if category not in SEMEVAL_TOPIC_MAP:
                    raise ValueError(f"{path.name} {sid}: unmapped category {category!r}")
                if polarity not in _SEMEVAL_POLARITIES:
                    raise ValueError(f"{path.name} {sid}: unknown polarity {polarity!r}")
                target = op.get("target")
                opinions.append(
                    {
                        "category": category,
                        "polarity": polarity,
                        "target": None if target in (None, "NULL") else target,
                        "from": int(op.get("from", "0")),
                        "to": int(op.get("to", "0")),
                    }
                )
            by_category: dict[str, list[str]] = {}
            for opinion in opinions:
                by_category.setdefault(opinion["category"], []).append(opinion["polarity"])
            categories = {c: combine_polarities(ps) for c, ps in sorted(by_category.items())}
            topics: dict[str, Polarity] | None
            if out_of_scope and not opinions:
                topics = None
            else:
                topics = _map_topics((SEMEVAL_TOPIC_MAP[o["category"]], o["polarity"]) for o in opinions)
            out.append(
                Example(
                    source=SEMEVAL,
                    uid=f"{SEMEVAL}:{sid}",
                    text=sentence.findtext("text") or "",
                    language="en",
                    group=rid,
                    sentiment=combine_polarities(o["polarity"] for o in opinions),
                    topics=topics,
                    raw={
                        "rid": rid,
                        "sentence_id": sid,
                        "out_of_scope": out_of_scope,
                        "opinions": opinions,
                        "categories": categories,
                    },
                )
            )
    return out


# --------------------------------------------------------------------------- Airline


def load_airline(data_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    """Twitter US Airline Sentiment (en): 3-way sentiment, complaint reason if negative.

    128 ``tweet_id`` values occur twice (36 pairs disagree on a label); both rows are
    kept, ``group`` is the tweet id so a pair never straddles a split, and the uid
    of the second occurrence gets a ``~1`` suffix to stay unique.  Topics: negative
    tweets get their mapped reason (``Can't Tell`` -> ``{}``); other tweets
    ``None`` because reasons were only ever asked for negatives.
    """
    path = _require(resolve_data_dir(data_dir) / DATASET_FILES[AIRLINE][0])
    out: list[Example] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            tid = row["tweet_id"].strip()
            label = row["airline_sentiment"].strip()
            if label not in _AIRLINE_SENTIMENTS:
                raise ValueError(f"{path.name} {tid}: unknown airline_sentiment {label!r}")
            occurrence = seen.get(tid, 0)
            seen[tid] = occurrence + 1
            reason = row["negativereason"].strip() or None
            topics: dict[str, Polarity] | None = None
            if label == "negative" and reason is not None:
                if reason not in AIRLINE_TOPIC_MAP:
                    raise ValueError(f"{path.name} {tid}: unmapped negativereason {reason!r}")
                topic = AIRLINE_TOPIC_MAP[reason]
                topics = {} if topic is None else {topic: "negative"}
            uid = f"{AIRLINE}:{tid}" + (f"~{occurrence}" if occurrence else "")
            out.append(
                Example(
                    source=AIRLINE,
                    uid=uid,
                    text=_unescape_tweet(row["text"]),
                    language="en",
                    group=tid,
                    sentiment=_AIRLINE_SENTIMENTS[label],
                    topics=topics,
                    nps_detractor={"negative": 1, "positive": 0}.get(label),
                    raw={
                        "tweet_id": tid,
                        "occurrence": occurrence,
                        "airline": row["airline"],
                        "airline_sentiment_confidence": _optional_float(row["airline_sentiment_confidence"]),
                        "negativereason": reason,
                        "negativereason_confidence": _optional_float(row["negativereason_confidence"]),
                        "airline_sentiment_gold": row["airline_sentiment_gold"] or None,
                        "negativereason_gold": row["negativereason_gold"] or None,
                        "tweet_created": row["tweet_created"],
                        "text_original": row["text"],
                    },
                )
            )
    return out


# ----------------------------------------------------------------------- ATE_ABSITA


def _utf16_to_index(text: str, offset: int) -> int:
    """Code-point index of a UTF-16 code-unit offset (astral characters count twice)."""
    units = 0
    for i, ch in enumerate(text):
        if units >= offset:
            return i
        units += 2 if ord(ch) > 0xFFFF else 1
    return len(text)


def _locate_span(text: str, term: str, start: int, end: int) -> tuple[int, int, str]:
    """Repair an ATE_ABSITA aspect span; returns (start, end, how).

    The organisers' offsets are UTF-16 code units (JavaScript), so they drift by one
    after every emoji; one span is simply wrong.  ``how`` is ``"ok"``, ``"utf16"``,
    ``"searched"`` (nearest exact occurrence of the term) or ``"unresolved"``
    (original offsets kept).
    """
    if text[start:end] == term:
        return start, end, "ok"
    s, e = _utf16_to_index(text, start), _utf16_to_index(text, end)
    if text[s:e] == term:
        return s, e, "utf16"
    hits = []
    i = text.find(term)
    while i != -1 and term:
        hits.append(i)
        i = text.find(term, i + 1)
    if hits:
        best = min(hits, key=lambda h: abs(h - start))
        return best, best + len(term), "searched"
    return start, end, "unresolved"


def load_ate_absita(
    split: AteSplit = "train",
    data_dir: str | os.PathLike[str] | None = None,
) -> list[Example]:
    """ATE_ABSITA 2020 product reviews (it): stars, aspect terms with [pos, neg] flags.

    ``split="train"`` is what our hash split divides; ``split="dev"`` is the
    organisers' 109-review dev file, kept apart as an untouched check.  Sentence
    sentiment comes from the aspect flags (``None`` for the 16 % of reviews with no
    aspect), never from the stars; stars feed only ``stars`` and ``nps_detractor``.
    Aspect terms are free text, not categories, so ``topics=None``; the spans are
    in ``raw["aspects"]`` (repaired, see :func:`_locate_span`).
    """
    if split not in ("train", "dev"):
        raise ValueError(f"split must be 'train' or 'dev', got {split!r}")
    root = resolve_data_dir(data_dir)
    rel = next(p for p in DATASET_FILES[ATE_ABSITA] if p.endswith(f"/{split}.ndjson"))
    path = _require(root / rel)
    out: list[Example] = []
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path.name}:{line_no}"
            rec = json.loads(line)
            text, rid, score = rec["sentence"], str(rec["id_sentence"]), rec["score"]
            if not isinstance(score, int) or not 1 <= score <= 5:
                raise ValueError(f"{where}: score must be an int in 1..5, got {score!r}")
            terms, spans, pols = (
                rec["aspects"],
                rec["aspects_position"],
                rec["polarities"],
            )
            if not len(terms) == len(spans) == len(pols):
                raise ValueError(f"{where}: aspects/aspects_position/polarities lengths differ")
            aspects = []
            for term, (s0, e0), (p, n) in zip(terms, spans, pols, strict=True):
                s, e, how = _locate_span(text, term, int(s0), int(e0))
                aspects.append(
                    {
                        "term": term,
                        "start": s,
                        "end": e,
                        "span_fix": how,
                        "start_original": int(s0),
                        "end_original": int(e0),
                        "positive": _flag(p, f"{where} polarity"),
                        "negative": _flag(n, f"{where} polarity"),
                    }
                )
            out.append(
                Example(
                    source=ATE_ABSITA,
                    uid=f"{ATE_ABSITA}:{rid}",
                    text=text,
                    language="it",
                    group=rid,
                    sentiment=combine_polarities(flags_to_polarity(a["positive"], a["negative"]) for a in aspects),
                    topics=None,
                    stars=score,
                    nps_detractor=int(score <= ATE_DETRACTOR_MAX_STARS),
                    raw={
                        "id_sentence": rid,
                        "split": split,
                        "score": score,
                        "aspects": aspects,
                    },
                )
            )
    return out


# ------------------------------------------------------------------------------- all

_LOADERS: Mapping[str, Callable[[str | os.PathLike[str] | None], list[Example]]] = {
    SENTIPOLC: load_sentipolc,
    ABSITA: load_absita,
    SEMEVAL: load_semeval_restaurants,
    AIRLINE: load_airline,
    ATE_ABSITA: lambda d: load_ate_absita("train", d),
}


def load_dataset(name: str, data_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    """Load one dataset by name (ATE_ABSITA: train file; dev via load_ate_absita)."""
    if name not in _LOADERS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return _LOADERS[name](data_dir)


def load_all(
    data_dir: str | os.PathLike[str] | None = None,
    datasets: Iterable[str] = DATASETS,
) -> dict[str, list[Example]]:
    """Every dataset's training rows, keyed by name, in :data:`DATASETS` order."""
    return {name: load_dataset(name, data_dir) for name in datasets}


__all__ = [
    "ABSITA",
    "ABSITA_ASPECTS",
    "ABSITA_TOPIC_MAP",
    "AIRLINE",
    "AIRLINE_TOPIC_MAP",
    "ATE_ABSITA",
    "ATE_DETRACTOR_MAX_STARS",
    "DATASETS",
    "DATASET_FILES",
    "DATA_DIR_ENV",
    "SEMEVAL",
    "SEMEVAL_TOPIC_MAP",
    "SENTIMENTS",
    "SENTIPOLC",
    "SENTIPOLC_SENTIMENT",
    "Example",
    "Language",
    "Polarity",
    "Sentiment",
    "absita_flag_matrix",
    "combine_polarities",
    "dataset_paths",
    "flags_to_polarity",
    "load_absita",
    "load_airline",
    "load_all",
    "load_ate_absita",
    "load_dataset",
    "load_semeval_restaurants",
    "load_sentipolc",
    "repo_root",
    "resolve_data_dir",
]
