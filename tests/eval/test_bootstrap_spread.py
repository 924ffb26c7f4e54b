"""Dev metrics come with a bootstrap spread (mean, std, 95% interval), deterministic for a seed."""
from __future__ import annotations

from pathlib import Path

from voce.data.datasets import load_all, load_ate_absita
from voce.models.bundle import VoceBundle
from voce.models.encoders.factory import EncoderSpec, load_encoder

FIXTURES = Path(__file__).parents[1] / "fixtures" / "data"


def test_every_metric_gets_a_spread(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    from voce.eval.evaluate import evaluate_bundle

    bundle = VoceBundle.load(tiny_bundle_dir)
    enc = load_encoder(EncoderSpec(backend="fake", model="fake", cache_dir=tmp_path))
    dev = [e for rows in load_all(FIXTURES).values() for e in rows]
    report = evaluate_bundle(bundle, enc, dev, ate_dev=load_ate_absita("dev", FIXTURES))
    again = evaluate_bundle(bundle, enc, dev, ate_dev=load_ate_absita("dev", FIXTURES))
    m, spread = report["metrics"], report["spread"]
    assert spread == again["spread"]  # seeded
    numeric = {k for k, v in m.items() if isinstance(v, float)}
    assert numeric and numeric <= set(spread)
    for k in numeric:
        s = spread[k]
        assert s["ci_low"] <= s["mean"] <= s["ci_high"] and s["std"] >= 0
        # the point estimate sits inside (or at the edge of) its own bootstrap interval
        assert s["ci_low"] - 1e-9 <= m[k] <= s["ci_high"] + 1e-9, (k, m[k], s)
    assert any(spread[k]["std"] > 0 for k in numeric)
