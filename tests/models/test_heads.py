"""Every head: overfits two examples, survives save/load unchanged, batch == one at a time."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voce.models.bundle import SENTIMENT_LABELS, BundleError, VoceBundle
from voce.models.heads import LinearHead, ZeroShotCalibration, zero_shot_features
from voce.training.train import best_threshold, fit_binary_head, fit_softmax_head, fit_temperature


def _two(dim: int = 16) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_softmax_head_overfits_two_examples() -> None:
    x = _two()
    head = fit_softmax_head(x, ["positive", "negative"], SENTIMENT_LABELS, C=1e4, seed=0, x_cal=x[:0], y_cal=[])
    p = head.predict_proba(x)
    assert p.argmax(axis=1).tolist() == [0, 2]
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    # classes never seen in training get (almost) no mass
    assert p[:, [1, 3]].max() < 1e-6


def test_binary_head_overfits_two_examples() -> None:
    x = _two()
    head = fit_binary_head(x, np.array([0, 1]), C=1e4, seed=0, x_cal=x[:0], y_cal=np.array([]), label="staff")
    p = head.predict_proba(x)[:, 0]
    assert p[0] < 0.1 < 0.9 < p[1]


def test_batch_equals_single() -> None:
    rng = np.random.default_rng(1)
    head = LinearHead("softmax", SENTIMENT_LABELS, rng.normal(size=(4, 8)), rng.normal(size=4))
    x = rng.normal(size=(5, 8)).astype(np.float32)
    batch = head.predict_proba(x)
    single = np.vstack([head.predict_proba(x[i : i + 1]) for i in range(5)])
    assert np.allclose(batch, single, atol=1e-6)


def test_head_rejects_wrong_width() -> None:
    head = LinearHead("sigmoid", ["a"], np.zeros((1, 8)), np.zeros(1))
    with pytest.raises(ValueError, match="expects 8-d"):
        head.predict_proba(np.zeros((1, 4), np.float32))


def test_temperature_recovers_known_scale() -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(size=(4000, 3)) * 3
    p = np.exp(z / 2.0)
    p /= p.sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in p])
    assert fit_temperature(z.astype(np.float32), y) == pytest.approx(2.0, rel=0.1)


def test_best_threshold_prefers_separating_value() -> None:
    p = np.array([0.1, 0.2, 0.35, 0.4, 0.8, 0.9, 0.3, 0.45, 0.6, 0.05])
    y = np.array([0, 0, 0, 1, 1, 1, 0, 1, 1, 0])
    assert 0.35 < best_threshold(p, y) <= 0.4
    assert best_threshold(p[:4], y[:4]) == 0.5  # too few positives to tune


def test_zero_shot_features_shapes_and_margin() -> None:
    x = np.eye(3, dtype=np.float32)
    protos = [np.eye(3, dtype=np.float32)[[0]], np.eye(3, dtype=np.float32)[[1, 2]]]
    sims, margin = zero_shot_features(x, protos)
    assert sims.shape == (3, 2) and np.allclose(sims[0], [1, 0]) and np.allclose(margin.sum(axis=1), 0)
    cal = ZeroShotCalibration(w_sim=10, w_margin=0, bias=-5)
    assert cal.probability(sims, margin)[0, 0] > 0.99


def _bundle(rng: np.random.Generator, dim: int = 8) -> VoceBundle:
    def head(kind: str, labels: list[str]) -> LinearHead:
        return LinearHead(kind, labels, rng.normal(size=(len(labels), dim)), rng.normal(size=len(labels)),  # type: ignore[arg-type]
                          temperature=np.float32(1.3) if kind == "softmax" else np.full(len(labels), 0.9))
    return VoceBundle(
        encoder={"name": "fake", "dim": dim, "backend": "fake", "model": "fake"},
        sentiment=head("softmax", SENTIMENT_LABELS),
        topics=head("sigmoid", ["staff", "price_value"]),
        topic_polarity={"staff": head("softmax", SENTIMENT_LABELS)},
        detractor=head("sigmoid", ["detractor"]),
        zero_shot=ZeroShotCalibration(1.0, 2.0, -3.0),
        center=rng.normal(size=dim).astype(np.float32),
        version="t1",
        manifest_extra={"metrics": {"x": 1.0}},
    )


def test_bundle_save_load_identical_predictions(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    b = _bundle(rng)
    b.topics.thresholds = np.array([0.3, 0.6], np.float32)
    b.save(tmp_path / "b")
    c = VoceBundle.load(tmp_path / "b")
    x = rng.normal(size=(6, 8)).astype(np.float32)
    for name in ("sentiment", "topics", "detractor"):
        assert np.array_equal(getattr(b, name).predict_proba(x), getattr(c, name).predict_proba(x))
    assert np.array_equal(b.topic_polarity["staff"].predict_proba(x), c.topic_polarity["staff"].predict_proba(x))
    assert np.allclose(c.topics.thresholds, [0.3, 0.6])
    assert c.zero_shot == b.zero_shot and c.version == "t1" and c.manifest_extra["metrics"] == {"x": 1.0}


def test_bundle_detects_tampering_and_missing_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    _bundle(rng).save(tmp_path / "b")
    with pytest.raises(BundleError, match="not a Voce bundle"):
        VoceBundle.load(tmp_path / "missing")
    data = (tmp_path / "b" / "heads.safetensors").read_bytes()
    (tmp_path / "b" / "heads.safetensors").write_bytes(data[:-4] + b"\0\0\0\1")
    with pytest.raises(BundleError, match="checksum"):
        VoceBundle.load(tmp_path / "b")


def test_bundle_carries_its_encoder_adapter(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    adapter = tmp_path / "a.safetensors"
    adapter.write_bytes(b"adapter-bytes")
    b = _bundle(rng)
    b.adapter = adapter
    b.save(tmp_path / "b")
    c = VoceBundle.load(tmp_path / "b")
    assert c.adapter is not None and c.adapter.read_bytes() == b"adapter-bytes"
    assert c.manifest()["encoder"]["model"] == "fake"
    (tmp_path / "b" / "encoder_adapter.safetensors").write_bytes(b"tampered")
    with pytest.raises(BundleError, match="adapter|checksum"):
        VoceBundle.load(tmp_path / "b")
