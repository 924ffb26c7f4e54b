"""The learning-curve simulation on constructed data: a learner that improves with data shows a rising curve
that ends above the zero-shot line, the numbers a team plans with come out of the curve, and the plot is drawn."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voce.eval.learning_curve import CurveConfig, corrections_needed, curve_svg, simulate, write_report


def _data(n: int = 300, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Three classes around three noisy centres in 8 dimensions (well separated, so more data helps)."""
    rng = np.random.default_rng(seed)
    labels = [("apply", "pay", "support")[i % 3] for i in range(n)]
    centres = {lab: rng.normal(size=8) * 2 for lab in ("apply", "pay", "support")}
    x = np.stack([centres[lab] + rng.normal(scale=2.0, size=8) for lab in labels]).astype(np.float32)
    return x, labels


def centroid_fit(x: np.ndarray, labels: list[str], space: list[str]):  # type: ignore[no-untyped-def]
    means = {lab: x[[i for i, y in enumerate(labels) if y == lab]].mean(0) for lab in set(labels)}
    names = sorted(means)
    m = np.stack([means[k] for k in names])
    return lambda v: [names[i] for i in ((v[:, None, :] - m[None]) ** 2).sum(-1).argmin(1)]


def test_a_learner_that_improves_gives_a_rising_curve() -> None:
    x, labels = _data()
    zero = ["pay"] * len(labels)  # a zero-shot answer no better than a constant
    calls: list[int] = []

    def fit(xs: np.ndarray, ys: list[str], space: list[str]):  # type: ignore[no-untyped-def]
        assert space == ["apply", "pay", "support"] and len(xs) == len(ys)
        calls.append(len(ys))
        return centroid_fit(xs, ys, space)

    out = simulate(x, labels, fit, zero_shot=zero, config=CurveConfig(rounds=(2, 10, 40, 120), repeats=4))
    points = [p["corrections"] for p in out["curve"]]
    assert points == [2, 10, 40, 120, 210] and out["held_out"] == 90 and out["pool"] == 210
    accs = [p["accuracy"] for p in out["curve"]]
    assert accs[-1] > accs[0] + 0.2 and accs[-1] > 0.8  # more corrections, better answers
    assert out["zero_shot"]["accuracy"] == pytest.approx(1 / 3, abs=0.1)
    assert all(p["accuracy_min"] <= p["accuracy"] <= p["accuracy_max"] for p in out["curve"])
    needed = out["corrections_needed"]
    assert needed["beats_zero_shot"] is not None and needed["beats_zero_shot"] <= 40
    assert needed["plateau"] in points and needed["plateau"] >= needed["beats_zero_shot"]
    assert len(calls) <= 4 * 5  # a round whose corrections hold one class does not retrain


def test_corrections_needed_reads_the_curve() -> None:
    result = {"zero_shot": {"accuracy": 0.5}, "majority": {"accuracy": 0.4}, "curve": [
        {"corrections": 10, "accuracy": 0.45}, {"corrections": 20, "accuracy": 0.55},
        {"corrections": 40, "accuracy": 0.70}, {"corrections": 80, "accuracy": 0.71}]}
    assert corrections_needed(result, plateau_points=2) == {"beats_zero_shot": 20, "beats_majority": 10, "plateau": 40}
    result["curve"] = [{"corrections": 10, "accuracy": 0.3}]
    assert corrections_needed(result, plateau_points=2)["beats_zero_shot"] is None  # never: said, not invented


def test_too_few_texts_are_refused() -> None:
    with pytest.raises(ValueError, match="too few"):
        simulate(np.zeros((5, 2), np.float32), ["a"] * 5, centroid_fit)


def test_report_and_plot_are_written(tmp_path: Path) -> None:
    x, labels = _data(120)
    out = simulate(x, labels, centroid_fit, zero_shot=labels[::-1], config=CurveConfig(rounds=(5, 20), repeats=2))
    report = write_report({"utility": out}, tmp_path, "journeys", {"model": "test"})
    svg = curve_svg({"utility": out, "telco": out}, tmp_path / "journeys.svg", "test curve").read_text()
    assert report.is_file() and '"utility"' in report.read_text()
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 and "zero-shot" in svg and "utility (n=120)" in svg
