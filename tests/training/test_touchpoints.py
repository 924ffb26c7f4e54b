"""Touchpoint heads and the exclusive calibration, learned from an annotated corpus (a synthetic one here)."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from tests.tiny import tiny_config, tiny_examples
from voce.data.realcx import CXText
from voce.models.bundle import VoceBundle
from voce.models.encoders.fake import FakeEncoder
from voce.models.taxonomy import load_taxonomy
from voce.training import touchpoints as tp_module
from voce.training.train import train_heads

PHRASES = {
    "delivery": ["il corriere è arrivato in ritardo", "the parcel never arrived", "consegna veloce", "courier was late"],
    "billing": ["bolletta sbagliata", "charged twice on my bill", "addebito doppio", "refund still not paid"],
    "call_center": ["numero verde non risponde", "on hold for an hour", "operatore al telefono", "the agent hung up"],
    "product_service": ["prodotto ottimo", "the seat was comfortable", "funziona benissimo", "the food was cold"],
}
STAGE = {"delivery": "arrival_baggage", "billing": "after_trip", "call_center": "after_trip", "product_service": "flight"}


def _corpus(n: int = 240, seed: int = 0) -> list[CXText]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        if i % 6 == 5:
            rows.append(CXText(uid=f"s:{i}", source="s", group=str(i), language="it", text=f"viva il calcio {i}",
                               stratum="random", touchpoints=(), primary="none", topics=(), journey="airline",
                               stage="none", double=False))  # fmt: skip
            continue
        tp = list(PHRASES)[i % 4]
        text = f"{rng.choice(PHRASES[tp])} {rng.choice(['!', '.', ' davvero', ' really'])} {i}"
        rows.append(CXText(uid=f"s:{i}", source="s", group=str(i), language="it", text=text, stratum="random",
                           touchpoints=(tp,), primary=tp, topics=("other",), journey="airline", stage=STAGE[tp],
                           double=False))  # fmt: skip
    return rows


@pytest.fixture()
def corpus(monkeypatch: pytest.MonkeyPatch) -> list[CXText]:
    rows = _corpus()
    monkeypatch.setattr(tp_module, "load_realcx", lambda data_dir=None: rows)
    return rows


def test_touchpoint_heads_learn_the_corpus_and_survive_save_and_load(tmp_path: Path, corpus: list[CXText]) -> None:
    cfg = tiny_config(tmp_path / "b").model_copy(update={"touchpoint_data": True, "min_touchpoint_examples": 5})
    logs: list[str] = []
    bundle = train_heads(cfg, FakeEncoder(), tiny_examples(), progress=logs.append)
    assert bundle.touchpoints is not None and bundle.touchpoint_primary is not None
    assert set(bundle.touchpoints.labels) == set(PHRASES)
    assert bundle.touchpoint_primary.labels[-1] == "none"
    assert bundle.touchpoints_fingerprint == load_taxonomy_default_fp()
    assert any("zero-shot" in m and "trade_fair" in m for m in logs)  # too few labels: said, not hidden
    # the heads read the texts: a held-out phrase of each touchpoint gets its own touchpoint first
    enc = FakeEncoder()
    probe = {tp: f"{PHRASES[tp][0]} ! 999" for tp in PHRASES}
    p = bundle.touchpoint_primary.predict_proba(enc.encode(list(probe.values())))
    assert [bundle.touchpoint_primary.labels[int(k)] for k in p.argmax(axis=1)] == list(probe)
    # the exclusive calibration was fitted on the airline stages, with a positive weight on similarity
    assert bundle.exclusive is not None and np.isfinite(bundle.exclusive.w_sim)
    bundle.save(tmp_path / "saved")
    loaded = VoceBundle.load(tmp_path / "saved")
    x = enc.encode(["bolletta sbagliata ! 1", "numero verde non risponde . 2"])
    np.testing.assert_allclose(loaded.touchpoints.predict_proba(x), bundle.touchpoints.predict_proba(x), atol=1e-6)
    np.testing.assert_allclose(loaded.touchpoint_primary.predict_proba(x), bundle.touchpoint_primary.predict_proba(x),
                               atol=1e-6)  # fmt: skip
    assert loaded.exclusive is not None and loaded.exclusive.config() == bundle.exclusive.config()
    assert loaded.touchpoints_fingerprint == bundle.touchpoints_fingerprint


def test_without_the_corpus_touchpoints_stay_zero_shot_and_the_log_says_why(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(data_dir=None):  # type: ignore[no-untyped-def]
        raise FileNotFoundError("no shared data here")

    monkeypatch.setattr(tp_module, "load_realcx", missing)
    cfg = tiny_config(tmp_path / "b").model_copy(update={"touchpoint_data": True})
    logs: list[str] = []
    bundle = train_heads(cfg, FakeEncoder(), tiny_examples(), progress=logs.append)
    assert bundle.touchpoints is None and bundle.exclusive is None
    assert any("not available" in m for m in logs)


def load_taxonomy_default_fp() -> str:
    from voce.models.taxonomy import default_taxonomy

    return default_taxonomy().touchpoints.fingerprint()


def test_journey_files_parse_as_exclusive_sections() -> None:
    from voce.data.realcx import JOURNEYS, journey_path

    for name in JOURNEYS:
        section = load_taxonomy(journey_path(name)).touchpoints
        assert section.mode == "single" and len(section.entries) == 5
        assert all(e.names.get("it") and e.names.get("en") and e.descriptions.get("it") for e in section.entries)
