"""The shipped bundle on the real-text dev split: the touchpoint figures the README states must hold.

A guard like the hand-written touchpoint check, but on real texts: a retrained or fine-tuned bundle that
loses touchpoints fails here instead of shipping quietly.
"""
from __future__ import annotations

import pytest

from voce.data.realcx import load_realcx
from voce.eval.realcx import evaluate_corpus

pytestmark = [pytest.mark.real_model, pytest.mark.slow]


@pytest.fixture(scope="module")
def corpus():  # type: ignore[no-untyped-def]
    try:
        return load_realcx()
    except FileNotFoundError:
        pytest.skip("the shared data folder (texts of the annotated corpus) is not here")


def test_touchpoints_on_real_texts_meet_the_targets_in_each_language(real_analyzer, corpus) -> None:  # type: ignore[no-untyped-def]
    metrics, details = evaluate_corpus(real_analyzer, corpus)
    for lang in ("it", "en"):
        part = details["touchpoints"][lang]
        assert part["top1_accuracy"] >= 0.65, (lang, part)
        assert part["hit_primary_or_secondary"] >= 0.75, (lang, part)
        assert part["top1_accuracy"] > part["baseline_always_none"] + 0.2
    assert metrics["realcx_touchpoint_none_precision"] >= 0.7
