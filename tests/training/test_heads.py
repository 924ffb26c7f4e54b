"""The head registry: every learned head of a bundle comes from one fitter keyed like the bundle's field.

What matters for the next head type: train_heads takes whatever the registry fits and hands it to the bundle by
name, every fitter reads the same embeddings (each training text is encoded once), and a fitter that brings its
own rows embeds them through the context into the same space.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from tests.tiny import tiny_config, tiny_examples
from voce.models.bundle import VoceBundle
from voce.models.encoders.fake import FakeEncoder
from voce.models.heads import LinearHead
from voce.training.fit import fit_binary_head
from voce.training.heads import HEAD_FITTERS, HeadContext
from voce.training.train import train_heads


class CountingEncoder(FakeEncoder):
    """The fake encoder, remembering every batch it was asked to embed."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        self.calls.append(list(texts))
        return super().encode(texts, batch_size)


def test_registry_keys_are_the_bundles_head_fields(tmp_path: Path) -> None:
    fields = {f.name for f in dataclasses.fields(VoceBundle)}
    assert list(HEAD_FITTERS) == [
        "sentiment", "topics", "topic_polarity", "detractor", "touchpoints", "touchpoint_primary", "exclusive"
    ]
    assert set(HEAD_FITTERS) <= fields
    bundle = train_heads(tiny_config(tmp_path / "b"), FakeEncoder(), tiny_examples(), progress=lambda _m: None)
    # without the annotated corpus (touchpoint_data: false) the touchpoint heads and the calibration are absent
    assert {name.split(".")[0] for name in bundle.heads()} == {"sentiment", "topics", "topic_polarity", "detractor"}
    assert bundle.touchpoints is None and bundle.exclusive is None


def test_each_training_text_is_embedded_once_for_every_head(tmp_path: Path) -> None:
    enc = CountingEncoder()
    rows = tiny_examples()
    train_heads(tiny_config(tmp_path / "b"), enc, rows, progress=lambda _m: None)
    texts = {e.text for e in rows}
    assert sorted(enc.calls[0]) == sorted(texts)
    assert not any(texts & set(batch) for batch in enc.calls[1:])  # later batches: taxonomy texts only


def test_a_fitter_reads_the_shared_context_and_can_embed_its_own_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """How a head trained on a separate labelled corpus plugs in: a fitter, a registry entry (and a bundle field)."""
    seen: list[HeadContext] = []
    corpus = ["the app crashed at checkout", "l'app si blocca al pagamento", "lovely staff", "personale gentile"]

    def fit_corpus_head(ctx: HeadContext) -> LinearHead:
        seen.append(ctx)
        x = ctx.embed(corpus)
        y = np.asarray([1, 1, 0, 0])
        return fit_binary_head(x, y, 1e3, ctx.cfg.seed, x[:0], y[:0], "detractor")

    monkeypatch.setitem(HEAD_FITTERS, "detractor", fit_corpus_head)
    rows = tiny_examples()
    bundle = train_heads(tiny_config(tmp_path / "b"), FakeEncoder(), rows, progress=lambda _m: None)
    (ctx,) = seen
    assert {e.uid for e in ctx.fit}.isdisjoint(e.uid for e in ctx.calibration)
    assert len(ctx.fit) + len(ctx.calibration) == len(rows) and ctx.calibration
    assert ctx.X(ctx.fit).shape == (len(ctx.fit), FakeEncoder().dim)
    p = bundle.detractor.predict_proba(FakeEncoder().encode(corpus))[:, 0]
    assert p[:2].min() > 0.5 > p[2:].max()
