from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.encoders.cache import CachedEncoder, cache_key
from models.encoders.fake import FakeEncoder


class _Counting(FakeEncoder):
    calls = 0

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        self.calls += len(texts)
        return super().encode(texts, batch_size)


def test_cache_persists_and_imports(tmp_path: Path) -> None:
    inner = _Counting()
    c = CachedEncoder(inner, tmp_path)
    a = c.encode(["uno", "due", "uno"])
    assert inner.calls == 2 and np.allclose(a[0], a[2])
    c.save()
    again = CachedEncoder(inner, tmp_path)
    assert np.array_equal(again.encode(["due"]), a[1:2]) and inner.calls == 2
    vec = np.ones(inner.dim, np.float32) / np.sqrt(inner.dim)
    np.savez(tmp_path / "gpu-0.npz", keys=np.asarray([cache_key("tre")]), vectors=vec[None, :])
    assert again.import_npz([tmp_path / "gpu-0.npz"]) == 1
    assert np.allclose(again.encode(["tre"])[0], vec) and inner.calls == 2
    np.savez(tmp_path / "bad.npz", keys=np.asarray(["k"]), vectors=np.ones((1, 3), np.float32))
    with pytest.raises(ValueError, match="3-d"):
        again.import_npz([tmp_path / "bad.npz"])
