"""Topic discovery on a batch's existing embeddings: themes the taxonomy does not (yet) name.

The taxonomy only finds what someone wrote down; discovery clusters the batch
itself (BERTopic: UMAP + HDBSCAN) so teams can spot new themes and promote them.
It reuses the one e5 embedding per row that the analyzer already computed
("encode once, many heads"): BERTopic gets the vectors and an embedder that
refuses to run, so no second encoder pass and no model download can happen.

Why the extra steps around plain BERTopic (numbers: ``reports/discovery/``,
produced by ``python -m benchmarks.bench_discovery``):

* **Bilingual topics.** Multilingual e5 vectors carry a strong language
  component: Italian and English comments about the same thing sit closer to
  other comments in their own language than to each other, so clusters split by
  language.  Subtracting each language's mean vector (and re-normalising)
  removes that offset: on a same-theme bilingual set the parallel IT/EN pairs
  sharing a topic go from ~38 % to ~90 %.  A plain mean also carries what each
  language's customers talk about, so by default the mean is balanced over the
  taxonomy topics the analyzer assigned in both languages: on real batches
  where the languages cover different domains that takes pairs together from
  0.42 (no centering) and 0.54 (plain means) to 0.68.  Removing each language's
  top principal direction too (``language_components=1``) was measured and is
  not better overall.
* **No blobs.** On a batch with a few big islands (one per language or
  domain) HDBSCAN's "eom" selection answers with three giant clusters; topics
  are capped at ``max_topic_share`` of the batch so those come back as themes.
* **Few outliers.** HDBSCAN leaves ~15-28 % of short comments unclustered;
  they are reassigned to the nearest topic centroid when at least as close as
  the topic's fringe members, then the closest remaining ones until at most
  ``max_outlier_share`` stay unassigned.
* **Readable labels.** Keywords come from c-TF-IDF computed separately over
  the Italian and the English comments of each topic, so a mixed topic gets
  words in both languages instead of whichever language dominates.
* **Taxonomy mapping.** Each topic reports the taxonomy topic most of its
  comments were assigned, so the new themes are the ones without one.
* **Speed.** UMAP gets exact neighbours from one blocked matrix product
  instead of its own small-batch path (a Python call per pair) or NN-descent
  (~40 s of numba compilation); 20k comments take ~22 s on two cores (+~14 s JIT on first use).
"""

from __future__ import annotations

import re
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from voce.models.taxonomy import Taxonomy

#: below this many documents clustering is noise; the result says so instead of inventing topics
MIN_DOCS = 20
#: a language needs this many documents for its own mean; rarer ones are centered on the global mean
MIN_LANGUAGE_DOCS = 10
#: a language needs this many documents before its own principal directions are removed (see center_by_language)
MIN_COMPONENT_DOCS = 100
#: topic-balanced centering: a taxonomy topic counts when every centered language has this many comments with
#: it as their only assigned topic, and it needs at least this many such topics (else plain language means)
MIN_BALANCE_DOCS = 5
MIN_BALANCE_TOPICS = 2
#: the automatic min_topic_size is max(5, n // 100), capped here so big batches still get specific topics
MAX_AUTO_MIN_TOPIC_SIZE = 50
#: HDBSCAN's "eom" selection happily returns 3 giant clusters when a batch has a few big islands (one per
#: language or domain); by default no topic found by HDBSCAN may hold more than this share of the batch
DEFAULT_MAX_TOPIC_SHARE = 0.2
#: keywords per language, representative comments per topic, characters per representative comment
N_KEYWORDS = 8
N_REPRESENTATIVE = 3
REPRESENTATIVE_CHARS = 300
#: short labels: words or two-word phrases per label, c-TF-IDF candidates re-ranked, MMR diversity (0 = none)
N_LABEL_WORDS = 3
N_LABEL_CANDIDATES = 30
LABEL_DIVERSITY = 0.5
#: a label term appears in at least this share of the topic's comments of its language (and in 2)
LABEL_MIN_SUPPORT = 0.05
#: @handles and links name who was addressed or where, not what about: never label terms
HANDLE_RE = re.compile(r"@\w+|https?://\S+|www\.\S+")
#: a topic maps to a taxonomy topic when at least this share of its comments were assigned it
TAXONOMY_MIN_SHARE = 0.3
#: a topic is bilingual when each of Italian and English makes up at least this share of it
BILINGUAL_MIN_SHARE = 0.10
#: an outlier joins the nearest topic when it is as similar to its centroid as this quantile of clustered members
OUTLIER_FLOOR_QUANTILE = 0.05
#: keyword tokens: letters only, 3+ characters (drops numbers, elision stubs, "wi"/"fi" fragments)
TOKEN_PATTERN = r"(?u)\b[^\W\d_]{3,}\b"
#: what redaction writes in place of personal data (``<EMAIL>``, ``<NAME>``): a placeholder, never a keyword
PLACEHOLDER_RE = re.compile(r"<[A-Z][A-Z_]*>")
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
    label: str = Field(
        description="Short label: 2-3 keywords or phrases in the analyst's language (label_language) when the topic has "
        "comments in it, else in the topic's main language; chosen by relevance to the topic's centroid with "
        "diversity (KeyBERT-inspired scoring and BERTopic's maximal marginal relevance over the batch's embeddings)."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="The same short label per language with comments in the topic ('it', 'en')."
    )
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
    centering_topics: list[str] = Field(
        default_factory=list,
        description="Taxonomy topics whose per-language means were averaged into each language's mean "
        "(topic-balanced centering); empty = plain per-language means (or no centering).",
    )
    language_components: int = Field(description="Top principal directions removed per language after centering (0 = mean only).")
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
    balance_centering: bool = True,
    language_components: int = 0,
    max_outlier_share: float = 0.15,
    max_topic_share: float = DEFAULT_MAX_TOPIC_SHARE,
    label_language: str | None = None,
) -> DiscoveryResult:
    """Cluster a batch's comments into topics using the embeddings it already has.

    ``embeddings`` are the analyzer's document vectors (one row per text);
    ``languages`` the detected language per text (None = unknown);
    ``assigned_topics`` the taxonomy topic ids the analyzer gave each text and
    ``topic_labels`` their display names.  Same inputs and ``seed`` give the
    same assignments.  ``max_topic_share`` caps HDBSCAN clusters (1.0 = no
    cap): a theme bigger than that is returned as its sub-themes, which is what
    discovery is for; outlier reassignment may still grow a topic past it.
    ``balance_centering`` estimates each language's mean from the analyzer's
    topics (see :func:`center_by_language`) when ``assigned_topics`` allow it.
    ``language_components`` > 0 additionally removes each language's top
    principal directions (measured as an option, not better overall).
    ``label_language`` ("it" or "en", the analyst's) picks the language of each topic's ``label`` when the topic
    has comments in it; ``labels`` has every language's.
    """
    start = time.perf_counter()
    n = len(texts)
    vectors = _check_inputs(
        texts, embeddings, languages, assigned_topics, max_outlier_share, max_topic_share, language_components
    )
    langs = [normalize_language(lang) for lang in languages]

    def empty(note: str, mts: int | None, before: float | None = None) -> DiscoveryResult:
        return DiscoveryResult(
            seed=seed, n_docs=n, language_centering=center_languages,
            language_components=language_components if center_languages else 0, min_topic_size=mts,
            outlier_share_before=before, outlier_share=None if before is None else 1.0, bilingual_share=None,
            topics=[], assignments=[-1] * n, note=note, seconds=round(time.perf_counter() - start, 3),
        )  # fmt: skip

    if n < MIN_DOCS:
        return empty(f"topic discovery needs at least {MIN_DOCS} comments; this batch has {n}", None)
    if not any(t.strip() for t in texts):
        return empty("every comment is empty", None)
    balance_topics: list[str] = []
    if center_languages:
        if balance_centering and assigned_topics is not None:
            balance_topics = balancing_topics(langs, assigned_topics)
        vectors = center_by_language(
            vectors, langs, components=language_components, assigned_topics=assigned_topics, balance_topics=balance_topics
        )

    mts = resolve_min_topic_size(n, min_topic_size)
    raw = _cluster(texts, vectors, seed=seed, min_topic_size=mts, max_topic_share=max_topic_share)
    before = float(np.mean(raw == -1))
    if not (raw >= 0).any():
        return empty(f"no group of at least {mts} similar comments was found; every comment is an outlier", mts, before)

    labels = reassign_outliers(vectors, raw, max_outlier_share)
    labels = _renumber_by_size(labels)
    k = int(labels.max()) + 1
    keywords = _keywords_by_language(texts, labels, langs, k)
    short = short_labels(texts, vectors, labels, langs, k)
    topics = [
        _describe_topic(
            t, texts, vectors, labels, langs, keywords[t], assigned_topics, topic_labels or {}, short[t],
            normalize_language(label_language) if label_language else None,
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
        centering_topics=balance_topics,
        language_components=language_components if center_languages else 0,
        min_topic_size=mts,
        outlier_share_before=round(before, 4),
        outlier_share=round(float(np.mean(labels == -1)), 4),
        bilingual_share=bilingual_share(topics, langs),
        topics=topics,
        assignments=labels.tolist(),
        note=note,
        seconds=round(time.perf_counter() - start, 3),
    )


def _sequential_joblib() -> None:
    """In the discovery child: joblib (HDBSCAN's core distances) runs in the child itself.  Its loky worker
    processes, started from a process that is itself a spawned pool worker, deadlocked there on 20,000 comments
    (every process idle, waiting on the others); on 2 cores they gained little anyway."""
    import os

    os.environ["JOBLIB_MULTIPROCESSING"] = "0"


class DiscoveryProcessDied(RuntimeError):
    """The child process of :func:`discover_topics_in_child` ended without an answer (killed, out of memory)."""


def discover_topics_in_child(
    texts: list[str], embeddings: npt.NDArray[np.floating[Any]], languages: Sequence[str | None], **kwargs: Any
) -> DiscoveryResult:
    """:func:`discover_topics` in a fresh (spawned) child process, same arguments, same result.

    Why: BERTopic's imports alone (sentence-transformers, torch, UMAP, HDBSCAN, numba) hold about 620 MB, and the
    fit peaks near 1 GB more on 20,000 comments; in a long-lived service that memory stayed after the first batch.
    In a child it is all handed back when the child ends, and a fit that runs out of memory kills the child, not the
    service.  The price is the child's start and imports, about 6 s per batch on 2 cores.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_sequential_joblib) as pool:
        try:
            return pool.submit(discover_topics, list(texts), embeddings, list(languages), **kwargs).result()
        except BrokenProcessPool as exc:
            raise DiscoveryProcessDied(
                "topic discovery's process ended without an answer (out of memory?); the batch's analysis is kept"
            ) from exc


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


def center_by_language(
    vectors: npt.NDArray[np.float32],
    langs: Sequence[str],
    *,
    components: int = 0,
    assigned_topics: Sequence[Sequence[str]] | None = None,
    balance_topics: Sequence[str] = (),
) -> npt.NDArray[np.float32]:
    """Subtract each language's mean vector (optionally its top principal directions too) and re-normalise rows.

    The mean of a language's comments is mostly "this is Italian" (plus the
    batch's common ground), so removing it lets topic similarity dominate.
    But a plain mean also holds *what that language's customers talk about*:
    when the Italian comments are mostly about hotels and the English ones
    about flights, subtracting plain means removes part of the topics too.
    With ``balance_topics`` (taxonomy topics that every centered language has,
    from :func:`balancing_topics`) each language's mean is instead the average
    of its per-topic means over those same topics, so the language means
    differ by language only.  Languages with fewer than ``MIN_LANGUAGE_DOCS``
    comments (and unknown ones) get the global mean: their own mean would be
    one or two comments, i.e. their content, and subtracting it would erase
    what they say.  ``components`` > 0 also projects out each large language's
    top principal directions (LIR, Xie et al. 2022), only for languages with
    at least ``MIN_COMPONENT_DOCS`` comments.
    """
    return fit_language_centering(
        vectors, langs, components=components, assigned_topics=assigned_topics, balance_topics=balance_topics
    ).apply(vectors, langs)


@dataclass(frozen=True)
class LanguageCentering:
    """What :func:`center_by_language` subtracts, kept so that comments not in the fit get the same treatment
    (a large batch is clustered on a sample, the rest assigned afterwards: :func:`fit_topic_assigner`)."""

    global_mean: npt.NDArray[np.float32]
    means: dict[str, npt.NDArray[np.float32]]
    components: dict[str, npt.NDArray[np.float32]]

    def apply(self, vectors: npt.NDArray[np.float32], langs: Sequence[str]) -> npt.NDArray[np.float32]:
        codes = np.asarray(langs, dtype=object)
        centered = vectors - self.global_mean
        for lang, mean in self.means.items():
            rows = codes == lang
            if not rows.any():
                continue
            block = vectors[rows] - mean
            top = self.components.get(lang)
            if top is not None:
                block = block - (block @ top) @ top.T
            centered[rows] = block
        return _unit_rows(centered)


def fit_language_centering(
    vectors: npt.NDArray[np.float32],
    langs: Sequence[str],
    *,
    components: int = 0,
    assigned_topics: Sequence[Sequence[str]] | None = None,
    balance_topics: Sequence[str] = (),
) -> LanguageCentering:
    """The means (and principal directions) :func:`center_by_language` removes, measured on ``vectors``."""
    codes = np.asarray(langs, dtype=object)
    sole = np.asarray(
        [t[0] if len(t) == 1 else "" for t in assigned_topics] if assigned_topics is not None else [""] * len(langs),
        dtype=object,
    )
    means: dict[str, npt.NDArray[np.float32]] = {}
    tops: dict[str, npt.NDArray[np.float32]] = {}
    for lang in centered_languages(langs):
        rows = codes == lang
        if balance_topics:
            mean = np.mean([vectors[rows & (sole == t)].mean(axis=0) for t in balance_topics], axis=0)
        else:
            mean = vectors[rows].mean(axis=0)
        means[lang] = mean
        if components > 0 and int(rows.sum()) >= MIN_COMPONENT_DOCS:
            block = vectors[rows] - mean
            spread = block - block.mean(axis=0)
            _, eigvecs = np.linalg.eigh(spread.T.astype(np.float64) @ spread)
            tops[lang] = eigvecs[:, ::-1][:, :components].astype(np.float32)
    return LanguageCentering(vectors.mean(axis=0), means, tops)


@dataclass(frozen=True)
class TopicAssigner:
    """Themes found on a sample, applied to comments outside it (BERTopic's advice for large corpora: fit on a
    sample, ``transform`` the rest).  A comment joins the nearest theme centroid (cosine, in the sample's
    language-centred space) when it is at least as similar as the sample's least typical members
    (``OUTLIER_FLOOR_QUANTILE``), else it stays an outlier (-1) - the rule :func:`reassign_outliers` uses."""

    centering: LanguageCentering | None
    topic_ids: npt.NDArray[np.int64]
    centroids: npt.NDArray[np.float32]
    floor: float

    def assign(self, embeddings: npt.NDArray[np.floating[Any]], languages: Sequence[str | None]) -> npt.NDArray[np.int64]:
        if len(embeddings) == 0 or self.topic_ids.size == 0:
            return np.full(len(embeddings), -1, dtype=np.int64)
        vectors = _unit_rows(np.asarray(embeddings, dtype=np.float32))
        if self.centering is not None:
            vectors = self.centering.apply(vectors, [normalize_language(lang) for lang in languages])
        sims = vectors @ self.centroids.T
        nearest = sims.argmax(axis=1)
        best = sims[np.arange(len(vectors)), nearest]
        return np.where(best >= self.floor, self.topic_ids[nearest], -1).astype(np.int64)


def fit_topic_assigner(
    embeddings: npt.NDArray[np.floating[Any]],
    languages: Sequence[str | None],
    assignments: Sequence[int],
    *,
    assigned_topics: Sequence[Sequence[str]] | None = None,
    center_languages: bool = True,
    balance_centering: bool = True,
    language_components: int = 0,
) -> TopicAssigner:
    """The assigner for a :func:`discover_topics` run on (``embeddings``, ``languages``) that gave ``assignments``;
    the centering arguments must be the ones that run used."""
    vectors = _unit_rows(np.asarray(embeddings, dtype=np.float32))
    langs = [normalize_language(lang) for lang in languages]
    centering = None
    if center_languages:
        balance = balancing_topics(langs, assigned_topics) if balance_centering and assigned_topics is not None else []
        centering = fit_language_centering(
            vectors, langs, components=language_components, assigned_topics=assigned_topics, balance_topics=balance
        )
        vectors = centering.apply(vectors, langs)
    labels = np.asarray(assignments, dtype=np.int64)
    topic_ids = np.unique(labels[labels >= 0])
    if topic_ids.size == 0:
        return TopicAssigner(centering, topic_ids, np.zeros((0, vectors.shape[1]), np.float32), 1.0)
    centroids = _unit_rows(np.stack([vectors[labels == t].mean(axis=0) for t in topic_ids]))
    members = np.flatnonzero(labels >= 0)
    member_sims = np.einsum("ij,ij->i", vectors[members], centroids[np.searchsorted(topic_ids, labels[members])])
    return TopicAssigner(centering, topic_ids, centroids, float(np.quantile(member_sims, OUTLIER_FLOOR_QUANTILE)))


def centered_languages(langs: Sequence[str]) -> list[str]:
    """Languages that get their own mean: known, with at least ``MIN_LANGUAGE_DOCS`` comments (sorted)."""
    counts = Counter(langs)
    return sorted(lang for lang, c in counts.items() if lang != _UNKNOWN_LANGUAGE and c >= MIN_LANGUAGE_DOCS)


def balancing_topics(langs: Sequence[str], assigned_topics: Sequence[Sequence[str]]) -> list[str]:
    """Taxonomy topics usable for topic-balanced centering; empty when fewer than ``MIN_BALANCE_TOPICS``.

    A topic qualifies when, in every centered language, at least
    ``MIN_BALANCE_DOCS`` comments have it as their only assigned topic
    (multi-topic comments would blur the per-topic means).  Needs two or more
    centered languages: with one there is no language offset to estimate.
    """
    centered = centered_languages(langs)
    if len(centered) < 2:
        return []
    counts = Counter((lang, t[0]) for lang, t in zip(langs, assigned_topics, strict=True) if len(t) == 1)
    topics = {t for _lang, t in counts}
    usable = sorted(t for t in topics if all(counts[(lang, t)] >= MIN_BALANCE_DOCS for lang in centered))
    return usable if len(usable) >= MIN_BALANCE_TOPICS else []


def resolve_min_topic_size(n: int, requested: int | None) -> int:
    """HDBSCAN's min_cluster_size: the caller's value, or max(5, n // 100) capped; always within [2, n // 2]."""
    size = requested if requested is not None else max(5, min(n // 100, MAX_AUTO_MIN_TOPIC_SIZE))
    return int(max(2, min(size, n // 2)))


def reassign_outliers(vectors: npt.NDArray[np.float32], labels: npt.NDArray[np.int64], max_share: float) -> npt.NDArray[np.int64]:
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


def stopwords(language: str | None = None) -> frozenset[str]:
    """Stopwords shipped in ``models/resources/stopwords_it_en.txt``: Italian + English (``language`` None), or one
    language's sections plus the shared ones ("it" or "en"; sections are headed ``# --- Italian:`` / ``# --- English:``,
    any other header is shared).  Per language, an Italian word that is an English theme word (or the reverse) is
    not dropped from the other language's keywords."""
    return _stopwords(language)


@lru_cache(maxsize=4)
def _stopwords(language: str | None) -> frozenset[str]:
    text = resources.files("voce.models.resources").joinpath("stopwords_it_en.txt").read_text(encoding="utf-8")
    section = "shared"
    words: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# ---"):
            head = line[5:].strip().lower()
            section = "it" if head.startswith("italian") else "en" if head.startswith("english") else "shared"
            continue
        word = line.split("#", 1)[0].strip().lower()
        if word and (language is None or section in ("shared", language)):
            words.add(word)
    return frozenset(words)


# --- internals ---------------------------------------------------------------------------------------------------------


def _check_inputs(
    texts: Sequence[str],
    embeddings: npt.NDArray[np.floating[Any]],
    languages: Sequence[str | None],
    assigned_topics: Sequence[Sequence[str]] | None,
    max_outlier_share: float,
    max_topic_share: float,
    language_components: int,
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
    if not 0.0 < max_topic_share <= 1.0:
        raise ValueError("max_topic_share must be within (0, 1]")
    if language_components < 0:
        raise ValueError("language_components must be >= 0")
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
    texts: list[str], vectors: npt.NDArray[np.float32], *, seed: int, min_topic_size: int, max_topic_share: float
) -> npt.NDArray[np.int64]:
    """BERTopic's UMAP + HDBSCAN on the given vectors; -1 marks outliers.

    UMAP gets ``random_state`` (which also makes its layout single-threaded:
    that is what reproducibility costs) and exact neighbours; HDBSCAN is
    deterministic.  ``min_samples`` is kept below ``min_cluster_size`` because
    HDBSCAN's default (equal to it) marks a large share of short comments as
    noise, and ``max_cluster_size`` stops "eom" from answering with a few
    language- or domain-sized blobs.  BERTopic's own c-TF-IDF runs on
    whitespace tokens so that it cannot fail on stopword-only batches; the
    keywords we report are computed afterwards, per language.
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
        # exact neighbours from one BLAS pass: UMAP's own small-batch path calls a Python function per pair (a
        # minute for 4k comments) and its NN-descent costs ~40 s of numba compilation on first use
        precomputed_knn=exact_knn(vectors, min(15, n - 1)),
        random_state=seed,
        n_jobs=1,
    )
    hdbscan_model = HDBSCAN(
        min_cluster_size=min_topic_size,
        min_samples=max(2, min(min_topic_size // 2, 10, n - 1)),
        max_cluster_size=max(int(max_topic_share * n), 2 * min_topic_size) if max_topic_share < 1 else 0,
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


def exact_knn(vectors: npt.NDArray[np.float32], k: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Each row's ``k`` nearest rows by cosine distance (itself first), computed in memory-bounded blocks.

    Exact and deterministic; for unit rows 20,000 x 20,000 dot products take a few seconds on two cores.
    """
    n = vectors.shape[0]
    indices = np.empty((n, k), dtype=np.int64)
    distances = np.empty((n, k), dtype=np.float32)
    block = max(1, (1 << 24) // max(n, 1))  # ~64 MB of float32 similarities per block
    for lo in range(0, n, block):
        sims = vectors[lo : lo + block] @ vectors.T
        rows = np.arange(sims.shape[0])
        sims[rows, lo + rows] = np.inf  # itself first, even among exact duplicates
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(sims, top, axis=1)
        order = np.lexsort((top, -top_sims), axis=1)
        indices[lo : lo + block] = np.take_along_axis(top, order, axis=1)
        distances[lo : lo + block] = np.clip(1.0 - np.take_along_axis(top_sims, order, axis=1), 0.0, 2.0)
    return indices, distances


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
            PLACEHOLDER_RE.sub(" ", " ".join(texts[int(i)] for i in np.flatnonzero((labels == t) & (codes == lang))))
            for t in range(k)
        ]
        if not any(per_topic):
            continue
        vectorizer = CountVectorizer(token_pattern=TOKEN_PATTERN, lowercase=True, stop_words=sorted(stopwords()))
        try:
            counts = vectorizer.fit_transform(per_topic)
        except ValueError:  # nothing but stopwords, numbers or one-letter tokens in this language
            continue
        if counts.shape[1] == 1:  # one word left in this language: c-TF-IDF cannot weigh it (its IDF is a scalar)
            weights = counts.toarray().astype(np.float64)
        else:
            weights = ClassTfidfTransformer(reduce_frequent_words=True).fit_transform(counts).toarray()
        words = vectorizer.get_feature_names_out()
        for t in range(k):
            row = weights[t]
            top = [int(j) for j in np.argsort(-row, kind="stable")[:N_KEYWORDS] if row[j] > 0]
            out[t][lang] = [str(words[j]) for j in top]
    return out


def short_labels(
    texts: Sequence[str], vectors: npt.NDArray[np.float32], labels: npt.NDArray[np.int64], langs: Sequence[str], k: int
) -> list[dict[str, list[str]]]:
    """Per topic and keyword language, up to ``N_LABEL_WORDS`` words or two-word phrases that name the topic.

    Candidates: the topic's top ``N_LABEL_CANDIDATES`` c-TF-IDF terms (words and bigrams, that language's stop
    words, @handles and links removed, in at least two and ``LABEL_MIN_SUPPORT`` of its comments).  Each candidate
    gets a vector without any encoder pass: the mean of the batch's (language-centred) vectors of the comments of
    that language containing it.  As in BERTopic's KeyBERTInspired, candidates are ranked by cosine to the topic's
    centroid (a term whose comments sit in this topic names it; a term spread over the batch does not);
    BERTopic's maximal marginal relevance then picks a diverse few (so "abu" and "dhabi" or "ritardo" and
    "ritardi" do not fill the label), and a word already inside a chosen phrase is dropped.
    """
    from bertopic.representation._mmr import mmr
    from bertopic.vectorizers import ClassTfidfTransformer
    from scipy import sparse
    from sklearn.feature_extraction.text import CountVectorizer

    out: list[dict[str, list[str]]] = [{} for _ in range(k)]
    codes = np.asarray(langs, dtype=object)
    for lang in KEYWORD_LANGUAGES:
        rows = np.flatnonzero((codes == lang) & (labels >= 0))
        if rows.size < 2:
            continue
        docs = [HANDLE_RE.sub(" ", PLACEHOLDER_RE.sub(" ", texts[int(i)])) for i in rows]
        vectorizer = CountVectorizer(
            token_pattern=TOKEN_PATTERN, lowercase=True, stop_words=sorted(stopwords(lang)), ngram_range=(1, 2),
            min_df=2, binary=True,
        )  # fmt: skip
        try:
            counts = vectorizer.fit_transform(docs).tocsc()
        except ValueError:  # nothing but stopwords, numbers or one-letter tokens in this language
            continue
        words = vectorizer.get_feature_names_out()
        topic_of = labels[rows]
        onehot = sparse.csr_matrix((np.ones(rows.size, np.float32), (topic_of, np.arange(rows.size))), shape=(k, rows.size))
        per_topic = (onehot @ counts).tocsr()  # (k, V) comments of each topic containing each term
        # (the transformer normalises its input in place)
        ctfidf = ClassTfidfTransformer(reduce_frequent_words=True).fit_transform(per_topic.copy()).toarray()
        df = np.asarray(counts.sum(axis=0)).ravel()
        term_vecs = np.asarray(counts.T @ vectors[rows]) / np.maximum(df, 1)[:, None]
        term_vecs = _unit_rows(term_vecs)
        for t in range(k):
            mine = topic_of == t
            if not mine.any():
                continue
            support = per_topic[t].toarray().ravel()
            ranked = [int(j) for j in np.argsort(-ctfidf[t], kind="stable")[:N_LABEL_CANDIDATES] if ctfidf[t, j] > 0]
            # a term a handful of comments use (one user's nickname, a one-off name) does not name a theme; when no
            # term is that common, the ones in at least two comments still do better than none
            floor = min(2, int(mine.sum()))
            ranked = [j for j in ranked if support[j] >= max(floor, LABEL_MIN_SUPPORT * mine.sum())] or [
                j for j in ranked if support[j] >= floor
            ]
            if not ranked:
                continue
            centroid = _unit_rows(vectors[rows[mine]].mean(axis=0, keepdims=True))
            cands = [str(words[j]) for j in ranked]
            picked = mmr(centroid, term_vecs[ranked], cands, diversity=LABEL_DIVERSITY, top_n=min(len(cands), 2 * N_LABEL_WORDS))
            chosen: list[str] = []
            for term in picked:
                if any(term in c.split() or c in term.split() or _same_stem(term, c) for c in chosen):
                    continue  # "consegna" next to "consegna rapida", "thank" next to "thanks"
                chosen.append(term)
                if len(chosen) == N_LABEL_WORDS:
                    break
            out[t][lang] = chosen
    return out


def _same_stem(a: str, b: str) -> bool:
    """Two single words that share their first five letters (thank/thanks, vaccino/vaccini): one label term."""
    return " " not in a and " " not in b and len(a) >= 5 and len(b) >= 5 and a[:5] == b[:5]


def _short_label(short: dict[str, list[str]], languages: dict[str, int], label_language: str | None) -> str:
    """The label in ``label_language`` when the topic has it, else in its most frequent language with one."""
    ranked = [lang for lang in languages if short.get(lang)]
    if label_language and short.get(label_language):
        return ", ".join(short[label_language])
    return ", ".join(short[ranked[0]]) if ranked else "(no keywords)"


def _describe_topic(
    topic: int,
    texts: Sequence[str],
    vectors: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    langs: Sequence[str],
    keywords: dict[str, list[str]],
    assigned_topics: Sequence[Sequence[str]] | None,
    topic_labels: dict[str, str],
    short: dict[str, list[str]] | None = None,
    label_language: str | None = None,
) -> DiscoveredTopic:
    rows = np.flatnonzero(labels == topic)
    size = int(rows.size)
    counts = Counter(langs[int(i)] for i in rows)
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
        votes = Counter(tid for i in rows for tid in dict.fromkeys(assigned_topics[int(i)]))
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
        label=_short_label(short, languages, label_language) if short else _label(keywords, languages, size),
        labels={lang: ", ".join(words) for lang, words in (short or {}).items() if words},
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
