"""The ONNX model the service runs predicts what the torch model predicts (same merged, fine-tuned encoder)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voce.eval.consistency import load_pairs
from voce.models.spec import AnalyzerSpec, load_analyzer
from voce.models.types import DocumentInput

pytestmark = [pytest.mark.real_model, pytest.mark.slow]


def test_onnx_predictions_match_torch(real_analyzer, voce_cache_dir: Path) -> None:  # type: ignore[no-untyped-def]
    torch_analyzer = load_analyzer(AnalyzerSpec(backend="torch", encoder="e5-small", cache_dir=voce_cache_dir))
    pairs = load_pairs()
    docs = [DocumentInput(id=f"{i}-{lang}", text=p[lang]) for i, p in enumerate(pairs) for lang in ("it", "en")]
    onnx_res, torch_res = [], []
    for start in range(0, len(docs), 25):
        onnx_res += real_analyzer.analyze(docs[start : start + 25])[0]
        torch_res += torch_analyzer.analyze(docs[start : start + 25])[0]
    labels_equal = np.mean([a.sentiment.label == b.sentiment.label for a, b in zip(onnx_res, torch_res, strict=True)])
    assert labels_equal >= 0.995
    diffs = []
    for a, b in zip(onnx_res, torch_res, strict=True):
        sa, sb = a.sentiment.scores, b.sentiment.scores
        diffs += [abs(sa.positive - sb.positive), abs(sa.negative - sb.negative), abs(sa.neutral - sb.neutral)]
        diffs.append(abs(a.detractor.probability - b.detractor.probability))
        assert [t.id for t in a.topics] == [t.id for t in b.topics]
    assert max(diffs) <= 1e-3, max(diffs)
