"""What the running app holds: the admission gate (429 beyond capacity) and the model's loading state."""
from __future__ import annotations

from pathlib import Path

import pytest

from voce.models.spec import AnalyzerSpec
from voce.service.errors import Overloaded
from voce.service.state import Admission, Engine


def test_admission_rejects_beyond_capacity() -> None:
    a = Admission(concurrency=1, waiting=0)
    with a.slot(), pytest.raises(Overloaded), a.slot():
        pass
    with a.slot():  # released again
        pass


def test_engine_reports_a_failed_load_and_labels_only_once_loaded(tmp_path: Path) -> None:
    engine = Engine()
    assert engine.labels() == {}  # while loading: ids are shown as they are
    engine.load(AnalyzerSpec(backend="fake", encoder="fake", bundle=tmp_path / "missing", cache_dir=tmp_path))
    assert engine.loaded.is_set() and engine.analyzer is None and engine.error and "bundle" in engine.error
