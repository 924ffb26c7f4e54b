"""An encoder wrapper that remembers embeddings, on disk if asked.

Training and evaluation embed the same ~30k labelled texts many times; caching
them by (encoder name, text) makes a re-run cost seconds while still going
through the exact encoder the service uses for anything not cached.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from voce.models.encoders.base import Embeddings, Encoder, SpanEncoder, TokenCounter, approximate_token_counts


def cache_key(text: str) -> str:
    """Stable key of a text in embedding caches (also written by the GPU fine-tuning run)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def embedding_files(paths: list[Path]) -> list[Path]:
    """Files named, plus every ``*.npz`` of the folders named (sorted); ``FileNotFoundError`` if any is missing."""
    files = [f for p in paths for f in (sorted(Path(p).glob("*.npz")) if Path(p).is_dir() else [Path(p)])]
    missing = [str(f) for f in files if not f.is_file()]
    if missing or not files:
        raise FileNotFoundError(f"no embedding file at {', '.join(missing or map(str, paths))}")
    return files


class CachedEncoder:
    """Delegates to ``inner`` for texts it has not seen; optionally persisted as ``.npz``."""

    def __init__(self, inner: Encoder, cache_dir: Path | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self._mem: dict[str, np.ndarray] = {}
        self._path = None
        if cache_dir is not None:
            slug = re.sub(r"[^A-Za-z0-9._-]+", "_", inner.name)
            self._path = Path(cache_dir) / f"embeddings-{slug}.npz"
            if self._path.is_file():
                with np.load(self._path) as z:
                    for k, v in zip(z["keys"].tolist(), z["vectors"], strict=True):
                        self._mem[str(k)] = v

    def encode(self, texts: list[str], batch_size: int = 32) -> Embeddings:
        keys = [cache_key(t) for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in self._mem}.items())
        if missing:
            vecs = self.inner.encode([t for _, t in missing], batch_size=batch_size)
            for (k, _), v in zip(missing, vecs, strict=True):
                self._mem[k] = v
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._mem[k] for k in keys]).astype(np.float32)

    def encode_spans(
        self, texts: list[str], spans: list[list[tuple[int, int]]], batch_size: int = 32
    ) -> tuple[Embeddings, list[Embeddings]]:
        """The inner encoder's span vectors (not cached: they depend on the whole text); the text vectors are
        remembered like :meth:`encode`'s.  An inner encoder without spans encodes each span's text on its own."""
        if not isinstance(self.inner, SpanEncoder):
            docs = self.encode(texts, batch_size)
            return docs, [self.encode([t[a : a + n] for a, n in sp], batch_size) for t, sp in zip(texts, spans, strict=True)]
        docs, vecs = self.inner.encode_spans(texts, spans, batch_size)
        for t, v in zip(texts, docs, strict=True):
            self._mem.setdefault(cache_key(t), v)
        return docs, vecs

    def token_counts(self, texts: list[str]) -> list[int]:
        """The inner encoder's token counts (an estimate when it has no tokenizer)."""
        if isinstance(self.inner, TokenCounter):
            return self.inner.token_counts(texts)
        return approximate_token_counts(texts)

    def import_npz(self, paths: list[Path]) -> int:
        """Adopt embeddings computed elsewhere (keys = :func:`cache_key`), e.g. by the GPU fine-tuning run."""
        n = 0
        for p in paths:
            with np.load(p) as z:
                for k, v in zip(z["keys"].tolist(), z["vectors"], strict=True):
                    if v.shape != (self.dim,):
                        raise ValueError(f"{p}: {v.shape[0]}-d vectors, the encoder gives {self.dim}-d")
                    self._mem[str(k)] = v.astype(np.float32)
                    n += 1
        return n

    def save(self) -> None:
        """Write the cache atomically (no-op without a cache dir)."""
        if self._path is None or not self._mem:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.asarray(list(self._mem))
        vecs = np.stack(list(self._mem.values())).astype(np.float32)
        fd, tmp = tempfile.mkstemp(prefix=".emb-", suffix=".npz", dir=self._path.parent)
        os.close(fd)
        np.savez(tmp, keys=keys, vectors=vecs)
        os.replace(tmp, self._path)
