"""Repeated short texts are not encoded again, and nothing in the results changes because of it."""
from __future__ import annotations

from typing import Any

from voce.models.analyzer import Analyzer, AnalyzerConfig
from voce.models.types import DocumentInput

DOCS = [
    DocumentInput(id="1", text="ok"),
    DocumentInput(id="2", text="Il corriere è arrivato in ritardo. Pacco rotto!"),
    DocumentInput(id="3", text="grazie"),
    DocumentInput(id="4", text="x" * 150 + " " + "y" * 150),  # longer than repeat_max_chars: always encoded
]


class Counting:
    """The analyzer's encoder, counting the texts it is asked to encode."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.dim, self.seen = inner, inner.name, inner.dim, []  # type: list[str]

    def encode(self, texts: list[str], batch_size: int = 32) -> Any:
        self.seen += texts
        return self.inner.encode(texts, batch_size)


def _dump(results: list[Any]) -> list[Any]:
    return [r.model_dump() for r in results]


def test_second_time_only_the_long_text_is_encoded(fake_analyzer: Analyzer) -> None:
    counting = Counting(fake_analyzer.encoder)
    analyzer = Analyzer(counting, fake_analyzer.bundle, fake_analyzer.language_detector)  # type: ignore[arg-type]
    first, _ = analyzer.analyze(DOCS)
    n_first = len(counting.seen)
    second, _ = analyzer.analyze(list(reversed(DOCS)))
    assert _dump(second) == _dump(list(reversed(first)))
    assert counting.seen[n_first:] == [DOCS[3].text]
    off = Analyzer(fake_analyzer.encoder, fake_analyzer.bundle, fake_analyzer.language_detector,
                   config=AnalyzerConfig(repeat_cache=0))
    assert _dump(off.analyze(DOCS)[0]) == _dump(first)


def test_the_cache_is_bounded(fake_analyzer: Analyzer) -> None:
    counting = Counting(fake_analyzer.encoder)
    analyzer = Analyzer(counting, fake_analyzer.bundle, fake_analyzer.language_detector,  # type: ignore[arg-type]
                        config=AnalyzerConfig(repeat_cache=2))
    analyzer.analyze([DocumentInput(id=str(i), text=f"risposta {i}") for i in range(5)])
    assert analyzer._repeats is not None and len(analyzer._repeats) == 2
