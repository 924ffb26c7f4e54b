"""Topic discovery on a batch's existing embeddings: themes the taxonomy does not (yet) name.

The taxonomy only finds what someone wrote down; discovery clusters the batch
itself (BERTopic: UMAP + HDBSCAN) so teams can spot new themes and promote them.
It reuses the one e5 embedding per row that the analyzer already computed
("encode once, many heads"): BERTopic gets the vectors and an embedder that
refuses to run, so no second encoder pass and no model download can happen.

Why the extra steps around plain BERTopic:

* **Bilingual topics.** Multilingual e5 vectors carry a strong language
  component: Italian and English comments about the same thing sit closer to
  other comments in their own language than to each other, so clusters split by
  language.  Subtracting each language's mean vector (and re-normalising)
  removes that shared offset while keeping what the comment is about
  (measured in ``reports/discovery/bilingual.json`` by ``eval/bench_discovery.py``).
* **Few outliers.** HDBSCAN leaves many comments unclustered; a dashboard
  that hides a third of the feedback is useless, so outliers are reassigned to
  the nearest topic centroid when they are at least as close as the topic's
  fringe members, and then the closest remaining ones until at most
  ``max_outlier_share`` stay unassigned.
* **Readable labels.** Keywords come from c-TF-IDF computed separately over
  the Italian and the English comments of each topic, so a mixed topic gets
  words in both languages instead of whichever language dominates.
* **Taxonomy mapping.** Each topic reports the taxonomy topic most of its
  comments were assigned, so the new themes are the ones without one.
"""
from __future__ import annotations

import re
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from models.taxonomy import Taxonomy

#: below this many documents clustering is noise; the result says so instead of inventing topics
MIN_DOCS = 20
#: a language needs this many documents for its own mean; rarer ones are centered on the global mean
MIN_LANGUAGE_DOCS = 10
#: the automatic min_topic_size is max(5, n // 100), capped here so big batches still get specific topics
MAX_AUTO_MIN_TOPIC_SIZE = 50
#: keywords per language, representative comments per topic, characters per representative comment
N_KEYWORDS = 8
N_REPRESENTATIVE = 3
REPRESENTATIVE_CHARS = 300
#: a topic maps to a taxonomy topic when at least this share of its comments were assigned it
TAXONOMY_MIN_SHARE = 0.3
#: a topic is bilingual when each of Italian and English makes up at least this share of it
BILINGUAL_MIN_SHARE = 0.10
#: an outlier joins the nearest topic when it is as similar to its centroid as this quantile of clustered members
OUTLIER_FLOOR_QUANTILE = 0.05
#: keyword tokens: letters only, 3+ characters (drops numbers, elision stubs, "wi"/"fi" fragments)
TOKEN_PATTERN = r"(?u)\b[^\W\d_]{3,}\b"
#: the languages that get keywords (the stopword list covers these two)
KEYWORD_LANGUAGES = ("it", "en")

_UNKNOWN_LANGUAGE = "und"
_LANG_RE = re.compile(r"[-_]")


class RepresentativeDoc(BaseModel):
    """A comment close to its topic's centroid, to read what the topic is about."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(description="Position of the comment in the input batch.")
    text: str = Field(description=f"The comment, truncated to about {REPRESENTATIVE_CHARS} characters.")


class DiscoveredTopic(BaseModel):
    """One theme found in the batch."""

    model_config = ConfigDict(extra="forbid")

    id: int = Field(description="0..k-1, largest topic first.")
    size: int = Field(description="Comments assigned to the topic (after outlier reassignment).")
    languages: dict[str, int] = Field(description="Comments per language code ('und' = unknown).")
    keywords: dict[str, list[str]] = Field(
        description="c-TF-IDF keywords per language, computed over that language's comments only; empty when none."
    )
    label: str = Field(description="Short label from the top keywords of each well-represented language.")
    representative: list[RepresentativeDoc] = Field(description="Up to 3 distinct comments closest to the centroid.")
    taxonomy_topic: str | None = Field(
        description=f"The taxonomy topic assigned to most comments here, if at least {TAXONOMY_MIN_SHARE:.0%} of them; "
        "None = a theme the taxonomy does not cover (or no assignments were given)."
    )
    taxonomy_label: str | None = Field(description="Display name of taxonomy_topic (from topic_labels, else its id).")
    taxonomy_share: float | None = Field(
        description="Share of the topic's comments assigned the most common taxonomy topic, reported even below "
        "the threshold (0.0 when none had any); None when no assignments were given."
    )


class DiscoveryResult(BaseModel):
    """Topics discovered in one batch, with per-comment assignments and quality measures."""

    model_config = ConfigDict(extra="forbid")

    seed: int
    n_docs: int
    language_centering: bool = Field(description="Whether embeddings were centered per language before clustering.")
    min_topic_size: int | None = Field(description="HDBSCAN min_cluster_size used; None when clustering was skipped.")
    outlier_share_before: float | None = Field(description="Share of comments HDBSCAN left unclustered.")
    outlier_share: float | None = Field(description="Share still unassigned (-1) after reassignment.")
    bilingual_share: float | None = Field(
        description=f"Among topics with >= 2 comments, the share with >= {BILINGUAL_MIN_SHARE:.0%} Italian and "
        f">= {BILINGUAL_MIN_SHARE:.0%} English comments; None unless the batch has both languages and a topic."
    )
    topics: list[DiscoveredTopic]
    assignments: list[int] = Field(description="Topic id per input comment, in input order; -1 = outlier.")
    note: str | None = Field(default=None, description="Why there are no (or few) topics, when that happens.")
    seconds: float


def discover_topics(
    texts: list[str],
    embeddings: npt.NDArray[np.floating[Any]],
    languages: Sequence[str | None],
    *,
    assigned_topics: Sequence[Sequence[str]] | None = None,
    topic_labels: dict[str, str] | None = None,
    seed: int = 13,
    min_topic_size: int | None = None,
    center_languages: bool = True,
    max_outlier_share: float = 0.15,
) -> DiscoveryResult:
    """Cluster a batch's comments into topics using the embeddings it already has.

    ``embeddings`` are the analyzer's document vectors (one row per text);
    ``languages`` the detected language per text (None = unknown);
    ``assigned_topics`` the taxonomy topic ids the analyzer gave each text and
    ``topic_labels`` their display names.  Same inputs and ``seed`` give the
    same assignments.
    """
    start = time.perf_counter()
    n = len(texts)
    vectors = _check_inputs(texts, embeddings, languages, assigned_topics, max_outlier_share)
    langs = [normalize_language(lang) for lang in languages]
    if center_languages:
        vectors = center_by_language(vectors, langs)

    def empty(note: str, mts: int | None, before: float | None = None) -> DiscoveryResult:
        return DiscoveryResult(
            seed=seed, n_docs=n, language_centering=center_languages, min_topic_size=mts,
            outlier_share_before=before, outlier_share=None if before is None else 1.0, bilingual_share=None,
            topics=[], assignments=[-1] * n, note=note, seconds=round(time.perf_counter() - start, 3),
        )  # fmt: skip

    if n < MIN_DOCS:
        return empty(f"topic discovery needs at least {MIN_DOCS} comments; this batch has {n}", None)
    if not any(t.strip() for t in texts):
        return empty("every comment is empty", None)

    mts = resolve_min_topic_size(n, min_topic_size)
    raw = _cluster(texts, vectors, seed=seed, min_topic_size=mts)
    before = float(np.mean(raw == -1))
    if not (raw >= 0).any():
        return empty(f"no group of at least {mts} similar comments was found; every comment is an outlier", mts, before)

    labels = reassign_outliers(vectors, raw, max_outlier_share)
    labels = _renumber_by_size(labels)
    k = int(labels.max()) + 1
    keywords = _keywords_by_language(texts, labels, langs, k)
    topics = [
        _describe_topic(
            t, texts, vectors, labels, langs, keywords[t], assigned_topics, topic_labels or {}
        )
        for t in range(k)
    ]
    note = None
    if k == 1:
        note = "only one topic was found: the comments are too homogeneous (or too few) to split further"
    return DiscoveryResult(
        seed=seed,
        n_docs=n,
        language_centering=center_languages,
        min_topic_size=mts,
        outlier_share_before=round(before, 4),
        outlier_share=round(float(np.mean(labels == -1)), 4),
        bilingual_share=bilingual_share(topics, langs),
        topics=topics,
        assignments=labels.tolist(),
        note=note,
        seconds=round(time.perf_counter() - start, 3),
    )


def taxonomy_topic_labels(taxonomy: Taxonomy) -> dict[str, str]:
    """``topic_labels`` for :func:`discover_topics` from a taxonomy: "Italian name / English name"."""
    out: dict[str, str] = {}
    for entry in taxonomy.topics.entries:
        names = [entry.names.get(lang, "").strip() for lang in ("it", "en")]
        unique = [name for i, name in enumerate(names) if name and name not in names[:i]]
        out[entry.id] = " / ".join(unique) or entry.id
    return out


def normalize_language(code: str | None) -> str:
    """'it-IT', 'IT', 'it_ch' -> 'it'; None or '' -> 'und'."""
    if not code or not code.strip():
        return _UNKNOWN_LANGUAGE
    return _LANG_RE.split(code.strip().lower(), maxsplit=1)[0] or _UNKNOWN_LANGUAGE


def center_by_language(vectors: npt.NDArray[np.float32], langs: Sequence[str]) -> npt.NDArray[np.float32]:
    """Subtract each language's mean vector and re-normalise rows.

    The mean of a language's comments is mostly "this is Italian" (plus the
    batch's common ground), so removing it lets topic similarity dominate.
    Languages with fewer than ``MIN_LANGUAGE_DOCS`` comments (and unknown
    ones) get the global mean: their own mean would be one or two comments,
    i.e. their content, and subtracting it would erase what they say.
    """
    codes = np.asarray(langs, dtype=object)
    means = np.broadcast_to(vectors.mean(axis=0), vectors.shape).copy()
    for lang, count in Counter(langs).items():
        if lang == _UNKNOWN_LANGUAGE or count < MIN_LANGUAGE_DOCS:
            continue
        rows = codes == lang
        means[rows] = vectors[rows].mean(axis=0)
    return _unit_rows(vectors - means)


def resolve_min_topic_size(n: int, requested: int | None) -> int:
    """HDBSCAN's min_cluster_size: the caller's value, or max(5, n // 100) capped; always within [2, n // 2]."""
    size = requested if requested is not None else max(5, min(n // 100, MAX_AUTO_MIN_TOPIC_SIZE))
    return int(max(2, min(size, n // 2)))


def reassign_outliers(
    vectors: npt.NDArray[np.float32], labels: npt.NDArray[np.int64], max_share: float
) -> npt.NDArray[np.int64]:
    """Give HDBSCAN's outliers to the nearest topic centroid (cosine), with a similarity floor.

    The same idea as BERTopic's ``reduce_outliers(strategy="embeddings")``,
    with the threshold chosen from the data: an outlier joins a topic when it
    is at least as similar to the centroid as the least typical members
    already are (``OUTLIER_FLOOR_QUANTILE``).  If more than ``max_share`` would
    still be outliers, the most similar of them are reassigned too, so the
    outlier share is bounded while the truly unrelated comments stay out.
    """
    labels = labels.copy()
    topic_ids = np.unique(labels[labels >= 0])
    outliers = np.flatnonzero(labels == -1)
    if topic_ids.size == 0 or outliers.size == 0:
        return labels
    centroids = _unit_rows(np.stack([vectors[labels == t].mean(axis=0) for t in topic_ids]))
    members = np.flatnonzero(labels >= 0)
    member_sims = np.einsum("ij,ij->i", vectors[members], centroids[np.searchsorted(topic_ids, labels[members])])
    floor = float(np.quantile(member_sims, OUTLIER_FLOOR_QUANTILE))
    sims = vectors[outliers] @ centroids.T
    nearest = sims.argmax(axis=1)
    best = sims[np.arange(outliers.size), nearest]
    take = best >= floor
    allowed = int(np.floor(max_share * labels.size))
    still_out = int((~take).sum())
    if still_out > allowed:
        # stable sort on -similarity: ties resolve by position, so the result is reproducible
        order = np.argsort(-np.where(take, np.inf, best), kind="stable")
        take[order[: outliers.size - allowed]] = True
    labels[outliers[take]] = topic_ids[nearest[take]]
    return labels


def bilingual_share(topics: Sequence[DiscoveredTopic], langs: Sequence[str]) -> float | None:
    """Share of topics (>= 2 comments) with both Italian and English well represented; None if not measurable."""
    present = set(langs)
    eligible = [t for t in topics if t.size >= 2]
    if not {"it", "en"} <= present or not eligible:
        return None
    mixed = sum(
        1
        for t in eligible
        if t.languages.get("it", 0) >= BILINGUAL_MIN_SHARE * t.size and t.languages.get("en", 0) >= BILINGUAL_MIN_SHARE * t.size
    )
    return round(mixed / len(eligible), 4)


@lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    """Italian + English stopwords shipped in ``models/resources/stopwords_it_en.txt``."""
    text = resources.files("models.resources").joinpath("stopwords_it_en.txt").read_text(encoding="utf-8")
    words = (line.split("#", 1)[0].strip().lower() for line in text.splitlines())
    return frozenset(w for w in words if w)


# --- internals ---------------------------------------------------------------------------------------------------------


def _check_inputs(
    texts: Sequence[str],
    embeddings: npt.NDArray[np.floating[Any]],
    languages: Sequence[str | None],
    assigned_topics: Sequence[Sequence[str]] | None,
    max_outlier_share: float,
) -> npt.NDArray[np.float32]:
    """Validate shapes and return unit-norm float32 vectors (a copy; the caller's array is never modified)."""
    n = len(texts)
    matrix = np.asarray(embeddings, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != n:
        raise ValueError(f"embeddings must be a (len(texts), dim) matrix; got shape {matrix.shape} for {n} texts")
    if len(languages) != n:
        raise ValueError(f"languages has {len(languages)} entries for {n} texts")
    if assigned_topics is not None and len(assigned_topics) != n:
        raise ValueError(f"assigned_topics has {len(assigned_topics)} entries for {n} texts")
    if not np.isfinite(matrix).all():
        raise ValueError("embeddings contain NaN or infinite values")
    if not 0.0 <= max_outlier_share <= 1.0:
        raise ValueError("max_outlier_share must be within [0, 1]")
    return _unit_rows(matrix)


def _unit_rows(matrix: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


def _no_embedder() -> Any:
    """A BERTopic embedder that refuses to embed: discovery must only ever use the vectors it is given."""
    from bertopic.backend import BaseEmbedder

    class _PrecomputedOnly(BaseEmbedder):  # type: ignore[misc]
        def embed(self, documents: list[str], verbose: bool = False) -> np.ndarray:
            raise RuntimeError("topic discovery reuses the analyzer's embeddings; it never encodes text itself")

    return _PrecomputedOnly()


def _cluster(
    texts: list[str], vectors: npt.NDArray[np.float32], *, seed: int, min_topic_size: int
) -> npt.NDArray[np.int64]:
    """BERTopic's UMAP + HDBSCAN on the given vectors; -1 marks outliers.

    UMAP gets ``random_state`` (which also makes it single-threaded: that is
    what reproducibility costs) and ``low_memory``; HDBSCAN is deterministic.
    ``min_samples`` is kept below ``min_cluster_size`` because HDBSCAN's
    default (equal to it) marks half of a short-comment batch as noise.
    BERTopic's own c-TF-IDF runs on whitespace tokens only so that it cannot
    fail on stopword-only batches; the keywords we report are computed later.
    """
    from bertopic import BERTopic
    from hdbscan import HDBSCAN
    from sklearn.feature_extraction.text import CountVectorizer
    from umap import UMAP

    n = len(texts)
    umap_model = UMAP(
        n_neighbors=min(15, n - 1),
        n_components=min(5, n - 2),
        min_dist=0.0,
        metric="cosine",
        random_state=seed,
        low_memory=True,
        n_jobs=1,
    )
    hdbscan_model = HDBSCAN(
        min_cluster_size=min_topic_size,
        min_samples=max(2, min(min_topic_size // 2, 10, n - 1)),
        metric="euclidean",
        cluster_selection_method="eom",
        prediction_data=False,
    )
    model = BERTopic(
        embedding_model=_no_embedder(),
        umap_model=umap_model,
        hdbscan_model=hdbscan_model,
        vectorizer_model=CountVectorizer(token_pattern=r"\S+", lowercase=True),
        calculate_probabilities=False,
        verbose=False,
    )
    with warnings.catch_warnings():
        # UMAP/numba chatter ("n_jobs overridden by random_state", spectral-init fallbacks on tiny batches)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        topics, _ = model.fit_transform(texts, embeddings=vectors)
    return np.asarray(topics, dtype=np.int64)


def _renumber_by_size(labels: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Topic ids 0..k-1 by size, largest first (ties: lower old id first); -1 stays -1."""
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    order = sorted(range(ids.size), key=lambda i: (-counts[i], ids[i]))
    mapping = {int(ids[i]): new for new, i in enumerate(order)}
    return np.asarray([mapping.get(int(t), -1) for t in labels], dtype=np.int64)


def _keywords_by_language(
    texts: Sequence[str], labels: npt.NDArray[np.int64], langs: Sequence[str], k: int
) -> list[dict[str, list[str]]]:
    """Per topic, c-TF-IDF keywords over each keyword language's comments only.

    One c-TF-IDF per language: a word's weight compares topics within the same
    language, so English words never compete with (or get their IDF from)
    Italian text.
    """
    from bertopic.vectorizers import ClassTfidfTransformer
    from sklearn.feature_extraction.text import CountVectorizer

    out: list[dict[str, list[str]]] = [{lang: [] for lang in KEYWORD_LANGUAGES} for _ in range(k)]
    codes = np.asarray(langs, dtype=object)
    for lang in KEYWORD_LANGUAGES:
        per_topic = [
            " ".join(texts[i] for i in np.flatnonzero((labels == t) & (codes == lang))) for t in range(k)
        ]
        if not any(per_topic):
            continue
        vectorizer = CountVectorizer(token_pattern=TOKEN_PATTERN, lowercase=True, stop_words=sorted(stopwords()))
        try:
            counts = vectorizer.fit_transform(per_topic)
        except ValueError:  # nothing but stopwords, numbers or one-letter tokens in this language
            continue
        weights = ClassTfidfTransformer(reduce_frequent_words=True).fit_transform(counts).toarray()
        words = vectorizer.get_feature_names_out()
        for t in range(k):
            row = weights[t]
            top = [int(j) for j in np.argsort(-row, kind="stable")[:N_KEYWORDS] if row[j] > 0]
            out[t][lang] = [str(words[j]) for j in top]
    return out


def _describe_topic(
    topic: int,
    texts: Sequence[str],
    vectors: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    langs: Sequence[str],
    keywords: dict[str, list[str]],
    assigned_topics: Sequence[Sequence[str]] | None,
    topic_labels: dict[str, str],
) -> DiscoveredTopic:
    rows = np.flatnonzero(labels == topic)
    size = int(rows.size)
    counts = Counter(langs[i] for i in rows)
    languages = {lang: counts[lang] for lang in sorted(counts, key=lambda c: (-counts[c], c))}

    centroid = _unit_rows(vectors[rows].mean(axis=0, keepdims=True))[0]
    order = rows[np.argsort(-(vectors[rows] @ centroid), kind="stable")]
    representative: list[RepresentativeDoc] = []
    seen: set[str] = set()
    for i in order:
        key = " ".join(texts[i].lower().split())
        if key in seen:  # retweets and copy-pasted complaints would otherwise fill all three slots
            continue
        seen.add(key)
        representative.append(RepresentativeDoc(index=int(i), text=_truncate(texts[i])))
        if len(representative) == N_REPRESENTATIVE:
            break

    tax_topic: str | None = None
    tax_share: float | None = None
    if assigned_topics is not None:
        votes = Counter(tid for i in rows for tid in dict.fromkeys(assigned_topics[i]))
        tax_share = 0.0
        if votes:
            best, count = min(votes.items(), key=lambda kv: (-kv[1], kv[0]))
            tax_share = round(count / size, 4)
            tax_topic = best if tax_share >= TAXONOMY_MIN_SHARE else None

    return DiscoveredTopic(
        id=topic,
        size=size,
        languages=languages,
        keywords=keywords,
        label=_label(keywords, languages, size),
        representative=representative,
        taxonomy_topic=tax_topic,
        taxonomy_label=None if tax_topic is None else topic_labels.get(tax_topic, tax_topic),
        taxonomy_share=tax_share,
    )


def _label(keywords: dict[str, list[str]], languages: dict[str, int], size: int) -> str:
    """Top 3 keywords of each well-represented language, most frequent language first: "camera, letto / room, bed"."""
    ranked = [lang for lang in languages if lang in keywords and keywords[lang]]
    chosen = [lang for lang in ranked if languages[lang] >= BILINGUAL_MIN_SHARE * size] or ranked[:1]
    parts: list[str] = []
    used: set[str] = set()
    for lang in chosen:
        words = [w for w in keywords[lang] if w not in used][:3]
        used.update(words)
        if words:
            parts.append(", ".join(words))
    return " / ".join(parts) if parts else "(no keywords)"


def _truncate(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= REPRESENTATIVE_CHARS:
        return text
    cut = text[: REPRESENTATIVE_CHARS - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > REPRESENTATIVE_CHARS // 2 else cut) + "…"
