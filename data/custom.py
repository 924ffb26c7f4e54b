"""A team's own labelled feedback file, read into the same :class:`Example` records as the public data.

Data scientists retrain (``extra_data:`` in the train config) and evaluate
(``voce eval --data FILE``) on their own labels, which arrive as whatever their
tools export: CSV with ``,`` ``;`` tab or ``|`` delimiters, in UTF-8, UTF-8 with a
BOM (Excel) or Latin-1 (read as Windows-1252), or JSON Lines.  One function, :func:`load_custom_file`,
reads all of them.

Columns (CSV header / JSONL keys, case-insensitive)
    * ``text`` (required).
    * ``id``: optional; without it the row is ``row-<line>`` (CSV, the
      spreadsheet row number) or ``line-<n>`` (JSONL).  Rows sharing an id are one
      split group, so they never straddle train and dev.
    * ``language``: ``it`` or ``en`` (also ``italiano``/``english``...); when
      empty it is detected with :func:`models.language.default_detector`.  Other
      languages are row errors: the heads are only trained for it/en.
    * ``sentiment``: ``positive|neutral|negative|mixed``, Italian
      ``positivo|neutro|negativo|misto`` (and feminine forms), or ``pos|neu|neg``.
    * ``topics``: ``id1;id2`` or ``id1,id2`` or a JSON list (every topic takes the
      row's sentiment as its polarity, ``neutral`` when the row has none), or a
      JSON object ``{"topic_id": "polarity"}``.  ``none``, ``-``, ``[]`` or ``{}``
      mean "annotated, no topic applies"; an **empty cell means not annotated**
      (the row is left out of topic training and topic metrics, as in
      :mod:`voce.data.datasets`: unknown is not negative).  Any snake_case id is
      accepted here; a head is only trained for ids that also exist in the
      taxonomy used for training, so custom ids must be declared in a custom
      taxonomy YAML (``taxonomy:`` in the train config).
    * Detractor, from one of: ``nps`` (0-10; a detractor scores 0-6, as in NPS),
      ``detractor`` (``0/1``, ``true/false``, ``yes/no``) or ``stars`` (1-5; 1-3
      stars is a detractor, the same cut as the ATE_ABSITA proxy in
      :mod:`voce.data.datasets`: stretched onto 0-10, 3 stars is 5 and 4 stars is a
      passive 7.5).  When a row has several of them they must agree.

    Other columns are ignored (and listed in :attr:`CustomData.ignored_columns`).

Bad rows are not fatal
    A row that cannot be read (unknown label, empty text, a JSON error, more
    fields than the header...) is skipped and reported as a :class:`RowError`
    with its line number and the reason; the file as a whole fails
    (:class:`CustomDataError`) only when it has no ``text`` column, no label
    column, or no usable row.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from voce.data.datasets import ATE_DETRACTOR_MAX_STARS, Example, Language, Polarity, Sentiment
from voce.models.language import LanguageDetector, default_detector

#: ``Example.source`` of a custom file is this prefix plus the file's stem
CUSTOM_PREFIX = "custom:"
#: an NPS answer at or below this is a detractor (NPS: 0-6 detractor, 7-8 passive, 9-10 promoter)
NPS_DETRACTOR_MAX = 6
LABEL_COLUMNS: tuple[str, ...] = ("sentiment", "topics", "nps", "detractor", "stars")
KNOWN_COLUMNS: frozenset[str] = frozenset({"text", "id", "language", *LABEL_COLUMNS})
CSV_DELIMITERS: tuple[str, ...] = (",", ";", "\t", "|")
JSONL_SUFFIXES: frozenset[str] = frozenset({".jsonl", ".ndjson", ".json"})
CSV_SUFFIXES: frozenset[str] = frozenset({".csv", ".tsv", ".txt"})

SENTIMENT_ALIASES: Mapping[str, Sentiment] = {
    **dict.fromkeys(("positive", "positivo", "positiva", "pos"), "positive"),
    **dict.fromkeys(("neutral", "neutro", "neutra", "neu"), "neutral"),
    **dict.fromkeys(("negative", "negativo", "negativa", "neg"), "negative"),
    **dict.fromkeys(("mixed", "misto", "mista"), "mixed"),
}
LANGUAGE_ALIASES: Mapping[str, Language] = {
    **dict.fromkeys(("it", "ita", "italian", "italiano"), "it"),
    **dict.fromkeys(("en", "eng", "english", "inglese"), "en"),
}
_FLAG_ALIASES: Mapping[str, int] = {
    **dict.fromkeys(("1", "true", "yes", "y", "si", "sì"), 1),
    **dict.fromkeys(("0", "false", "no", "n"), 0),
}
_NO_TOPIC = frozenset({"none", "nessuno", "-", "[]", "{}"})
_TOPIC_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class CustomDataError(ValueError):
    """The file as a whole cannot be used (missing, unreadable, no ``text`` column, no usable row)."""


class _RowProblem(ValueError):
    """One row cannot be used; becomes a :class:`RowError`."""


@dataclass(frozen=True, slots=True)
class RowError:
    """A skipped row: where it is in the file and why it was skipped."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True)
class CustomData:
    """The usable rows of one file, the rows that were skipped, and what identifies the file."""

    path: Path
    source: str
    sha256: str
    examples: list[Example]
    errors: list[RowError] = field(default_factory=list)
    encoding: str = "utf-8"
    delimiter: str | None = None  # None for JSON Lines
    ignored_columns: list[str] = field(default_factory=list)

    def label_counts(self) -> dict[str, int]:
        """How many usable rows carry each kind of label."""
        return {
            "sentiment": sum(e.sentiment is not None for e in self.examples),
            "topics": sum(e.topics is not None for e in self.examples),
            "detractor": sum(e.nps_detractor is not None for e in self.examples),
        }

    def summary(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.label_counts().items())
        return f"{self.source}: {len(self.examples)} rows ({counts}), {len(self.errors)} skipped"


def custom_source(path: str | Path) -> str:
    """``Example.source`` for a custom file: ``custom:<file stem>``."""
    return f"{CUSTOM_PREFIX}{Path(path).stem}"


def is_custom_source(source: str) -> bool:
    return source.startswith(CUSTOM_PREFIX)


# ---------------------------------------------------------------------- reading


def _decode(data: bytes, name: str) -> tuple[str, str]:
    """Text and the encoding it was read with: UTF-16 (BOM), UTF-8 (BOM or not), else Windows-1252/Latin-1.

    Windows-1252 first because it is what Excel writes on Italian Windows and it
    agrees with Latin-1 on every printable character, adding the euro sign and
    typographic quotes where Latin-1 has control characters.
    """
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            return data.decode("utf-16"), "utf-16"
        if data.startswith(b"\xef\xbb\xbf"):
            return data[3:].decode("utf-8"), "utf-8-sig"
    except UnicodeDecodeError as exc:
        raise CustomDataError(f"{name}: starts with a byte-order mark but is not valid Unicode ({exc.reason})") from None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"  # every byte is a Latin-1 character: never fails


def _pick_delimiter(text: str, suffix: str) -> str:
    """The candidate delimiter that occurs most in the header line (ties: , ; tab |).

    The header names columns and rarely holds punctuation, unlike the free-text
    rows below it, which makes it a steadier signal than ``csv.Sniffer``.
    """
    if suffix == ".tsv":
        return "\t"
    header = text.split("\n", 1)[0]
    counts = [header.count(d) for d in CSV_DELIMITERS]
    best = max(range(len(CSV_DELIMITERS)), key=lambda i: (counts[i], -i))
    return CSV_DELIMITERS[best] if counts[best] else ","


def _norm_key(key: Any) -> str:
    return str(key or "").replace("\ufeff", "").strip().lower()


def _csv_rows(text: str, delimiter: str) -> tuple[list[str], Iterator[tuple[int, dict[str, Any] | _RowProblem]]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [_norm_key(h) for h in next(reader)]
    except StopIteration:
        raise CustomDataError("the file is empty") from None
    dupes = sorted({h for h in header if h and header.count(h) > 1})
    if dupes:
        raise CustomDataError(f"column(s) {', '.join(dupes)} appear more than once in the header")

    def rows() -> Iterator[tuple[int, dict[str, Any] | _RowProblem]]:
        line = reader.line_num + 1
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield line, _RowProblem(f"unreadable CSV ({exc})")
                line = reader.line_num + 1
                continue
            start, line = line, reader.line_num + 1
            if not any(v.strip() for v in values):
                continue
            if len(values) > len(header):
                yield start, _RowProblem(
                    f"{len(values)} fields but the header has {len(header)}"
                    f" (an unquoted {_show_delimiter(delimiter)} inside a value?)"
                )
                continue
            yield start, {h: v for h, v in zip(header, values, strict=False) if h}

    return header, rows()


def _show_delimiter(delimiter: str) -> str:
    return {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}[delimiter]


def _jsonl_rows(text: str) -> Iterator[tuple[int, dict[str, Any] | _RowProblem]]:
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield n, _RowProblem(f"not valid JSON ({exc.msg})")
            continue
        if not isinstance(obj, dict):
            yield n, _RowProblem("each line must be a JSON object")
            continue
        yield n, {_norm_key(k): v for k, v in obj.items()}


# ---------------------------------------------------------------------- parsing


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _as_text(value: Any, column: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _RowProblem(f"{column} must be a string, got {type(value).__name__}")
    return str(value).strip()


def parse_sentiment(value: Any, column: str = "sentiment") -> Sentiment | None:
    """English, Italian or abbreviated sentiment label -> Voce label (blank -> ``None``)."""
    if _blank(value):
        return None
    key = _as_text(value, column).lower()
    if key not in SENTIMENT_ALIASES:
        raise _RowProblem(f"unknown {column} {value!r} (use positive/neutral/negative/mixed or positivo/neutro/negativo/misto)")
    return SENTIMENT_ALIASES[key]


def _topic_id(value: Any) -> str:
    tid = _as_text(value, "topic id").lower()
    if not _TOPIC_ID.match(tid):
        raise _RowProblem(f"topic id {value!r} must be snake_case (lowercase letters, digits, '_')")
    return tid


def parse_topics(value: Any, default_polarity: Polarity) -> dict[str, Polarity] | None:
    """Topics cell -> ``{topic: polarity}``; blank -> ``None`` (not annotated), ``none``/``[]`` -> ``{}``."""
    if _blank(value):
        return None
    if isinstance(value, str):
        raw = value.strip()
        if raw.lower() in _NO_TOPIC:
            return {}
        if raw[0] in "[{":
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise _RowProblem(f"topics looks like JSON but is not valid ({exc.msg})") from None
        else:
            value = [t for t in re.split(r"[;,]", raw) if t.strip()]
    if isinstance(value, Mapping):
        out: dict[str, Polarity] = {}
        for k, v in value.items():
            out[_topic_id(k)] = parse_sentiment(v, f"polarity of topic {k!r}") or default_polarity
        return out
    if isinstance(value, list):
        return {_topic_id(t): default_polarity for t in value}
    raise _RowProblem(f"topics must be a list, an object or 'id1;id2', got {type(value).__name__}")


def _number(value: Any, column: str) -> int:
    if isinstance(value, bool):
        raise _RowProblem(f"{column} must be a whole number, got {value!r}")
    try:
        x = float(str(value).strip().replace(",", "."))
    except ValueError:
        raise _RowProblem(f"{column} must be a whole number, got {value!r}") from None
    if not math.isfinite(x) or x != int(x):
        raise _RowProblem(f"{column} must be a whole number, got {value!r}")
    return int(x)


def parse_detractor(row: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """``(nps_detractor, stars)`` from whichever of ``nps``/``detractor``/``stars`` the row has."""
    votes: dict[str, int] = {}
    stars = None
    if not _blank(row.get("nps")):
        nps = _number(row["nps"], "nps")
        if not 0 <= nps <= 10:
            raise _RowProblem(f"nps must be 0-10, got {row['nps']!r}")
        votes["nps"] = int(nps <= NPS_DETRACTOR_MAX)
    if not _blank(row.get("detractor")):
        flag = row["detractor"]
        key = str(int(flag) if isinstance(flag, (bool, int, float)) and flag in (0, 1) else flag).strip().lower()
        if key not in _FLAG_ALIASES:
            raise _RowProblem(f"detractor must be 0/1 or true/false, got {flag!r}")
        votes["detractor"] = _FLAG_ALIASES[key]
    if not _blank(row.get("stars")):
        stars = _number(row["stars"], "stars")
        if not 1 <= stars <= 5:
            raise _RowProblem(f"stars must be 1-5, got {row['stars']!r}")
        votes["stars"] = int(stars <= ATE_DETRACTOR_MAX_STARS)
    if len(set(votes.values())) > 1:
        said = ", ".join(f"{k} says {'detractor' if v else 'not detractor'}" for k, v in votes.items())
        raise _RowProblem(f"detractor labels disagree: {said}")
    return (next(iter(votes.values())) if votes else None), stars


class _Languages:
    """Language column or, when empty, the service's detector (built on first need)."""

    def __init__(self, detector: LanguageDetector | None) -> None:
        self._detector = detector

    def __call__(self, value: Any, text: str) -> tuple[Language, bool]:
        if not _blank(value):
            key = _as_text(value, "language").lower()
            if key not in LANGUAGE_ALIASES:
                raise _RowProblem(f"language {value!r} is not supported (use it or en)")
            return LANGUAGE_ALIASES[key], False
        if self._detector is None:
            self._detector = default_detector()
        guess = self._detector.detect(text)
        if guess.code not in LANGUAGE_ALIASES:
            raise _RowProblem(f"detected language {guess.code!r}; only it/en are supported (set the language column to keep it)")
        return LANGUAGE_ALIASES[guess.code], True


def _example(row: Mapping[str, Any], line: int, auto_id: str, source: str, languages: _Languages) -> Example:
    problems: list[str] = []

    def attempt(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except _RowProblem as exc:
            problems.append(str(exc))
            return None

    text_value = row.get("text")
    text = None
    if _blank(text_value):
        problems.append("empty text")
    elif not isinstance(text_value, str):
        problems.append(f"text must be a string, got {type(text_value).__name__}")
    else:
        text = text_value
    rid = auto_id if _blank(row.get("id")) else attempt(_as_text, row.get("id"), "id")
    sentiment = attempt(parse_sentiment, row.get("sentiment"))
    topics = attempt(parse_topics, row.get("topics"), sentiment or "neutral")
    detractor = attempt(parse_detractor, row)
    lang = attempt(languages, row.get("language"), text) if text is not None else None
    if problems:
        raise _RowProblem("; ".join(problems))
    assert text is not None and lang is not None and detractor is not None
    language, detected = lang
    nps_detractor, stars = detractor
    raw: dict[str, Any] = {"line": line, "id": rid, "language_detected": detected}
    for k in ("nps", "detractor", "stars"):
        if not _blank(row.get(k)):
            raw[k] = row[k]
    return Example(
        source=source,
        uid=f"{source}:{rid}",
        text=text,
        language=language,
        group=str(rid),
        sentiment=sentiment,
        topics=topics,
        stars=stars,
        nps_detractor=nps_detractor,
        raw=raw,
    )


def load_custom_file(path: str | Path, *, detector: LanguageDetector | None = None) -> CustomData:
    """Read a team's labelled CSV/JSONL file; bad rows are skipped and listed, never fatal.

    Raises :class:`CustomDataError` when the file is missing, has an unsupported
    extension, has no ``text`` column or no label column, or has no usable row.
    """
    path = Path(path)
    if not path.is_file():
        raise CustomDataError(f"{path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in JSONL_SUFFIXES | CSV_SUFFIXES:
        raise CustomDataError(f"{path.name}: unsupported file type {suffix!r}; use .csv/.tsv or .jsonl")
    data = path.read_bytes()
    text, encoding = _decode(data, path.name)
    source = custom_source(path)
    delimiter: str | None = None
    if suffix in JSONL_SUFFIXES:
        if text.lstrip().startswith("["):
            raise CustomDataError(f"{path.name}: a JSON array is not supported; write one JSON object per line (JSONL)")
        rows: list[tuple[int, dict[str, Any] | _RowProblem]] = list(_jsonl_rows(text))
        columns = sorted({k for _, r in rows if isinstance(r, dict) for k in r})
        auto = "line-{}"
    else:
        delimiter = _pick_delimiter(text, suffix)
        columns, row_iter = _csv_rows(text, delimiter)
        rows = list(row_iter)
        auto = "row-{}"
    name = path.name
    if "text" not in columns:
        found = ", ".join(c for c in columns if c) or "none"
        raise CustomDataError(f"{name}: no 'text' column (columns found: {found})")
    if not any(c in columns for c in LABEL_COLUMNS):
        raise CustomDataError(f"{name}: no label column; add at least one of {', '.join(LABEL_COLUMNS)}")

    languages = _Languages(detector)
    examples: list[Example] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        if isinstance(row, _RowProblem):
            errors.append(RowError(line, str(row)))
            continue
        try:
            ex = _example(row, line, auto.format(line), source, languages)
        except _RowProblem as exc:
            errors.append(RowError(line, str(exc)))
            continue
        n = seen.get(ex.uid, 0)
        seen[ex.uid] = n + 1
        if n:  # a repeated id stays in its group but needs its own uid
            ex = replace(ex, uid=f"{ex.uid}~{n}")
        examples.append(ex)
    if not examples:
        first = "; ".join(str(e) for e in errors[:3])
        raise CustomDataError(f"{name}: no usable row" + (f" ({len(errors)} skipped, e.g. {first})" if errors else ""))
    return CustomData(
        path=path,
        source=source,
        sha256=hashlib.sha256(data).hexdigest(),
        examples=examples,
        errors=errors,
        encoding=encoding,
        delimiter=delimiter,
        ignored_columns=sorted(c for c in columns if c and c not in KNOWN_COLUMNS),
    )


__all__ = [
    "CUSTOM_PREFIX",
    "CustomData",
    "CustomDataError",
    "LABEL_COLUMNS",
    "NPS_DETRACTOR_MAX",
    "RowError",
    "custom_source",
    "is_custom_source",
    "load_custom_file",
    "parse_detractor",
    "parse_sentiment",
    "parse_topics",
]
