from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voce.models.encoders.cache import CachedEncoder, cache_key, embedding_files
from voce.models.encoders.fake import FakeEncoder


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


def test_float16_parts_from_a_folder_are_imported_as_float32(tmp_path: Path) -> None:
    """`voce train --import-embeddings DIR` takes every part the GPU run wrote, fp16 ones too."""
    inner = _Counting()
    parts = tmp_path / "emb"
    parts.mkdir()
    rng = np.random.default_rng(0)
    texts = ["uno", "due", "tre"]
    vecs = rng.normal(size=(3, inner.dim)).astype(np.float16)
    np.savez(parts / "embeddings-0.npz", keys=np.asarray([cache_key(t) for t in texts[:2]]), vectors=vecs[:2])
    np.savez(parts / "embeddings-1.npz", keys=np.asarray([cache_key(texts[2])]), vectors=vecs[2:])
    (parts / "notes.txt").write_text("not an embedding file")
    files = embedding_files([parts])
    assert [f.name for f in files] == ["embeddings-0.npz", "embeddings-1.npz"]
    c = CachedEncoder(inner, None)
    assert c.import_npz(files) == 3
    got = c.encode(texts)
    assert got.dtype == np.float32 and np.array_equal(got, vecs.astype(np.float32)) and inner.calls == 0
    assert embedding_files([parts / "embeddings-1.npz"]) == [parts / "embeddings-1.npz"]
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        embedding_files([parts / "missing.npz"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        embedding_files([tmp_path / "empty"])
