"""Channel and touchpoint as two facts, and exclusive (mode: single) custom sections, through the analyzer."""
from __future__ import annotations

import numpy as np

from voce.models.heads import ExclusiveCalibration, LinearHead
from voce.models.taxonomy import parse_taxonomy
from voce.models.types import DocumentInput

JOURNEY = {
    "version": "j1",
    "touchpoints": {
        "mode": "single",
        "entries": [
            {"id": "join", "names": {"en": "Joining", "it": "Attivazione"},
             "descriptions": {"en": "Buying an offer and activating the line."}},
            {"id": "pay", "names": {"en": "Bills", "it": "Bollette"},
             "descriptions": {"en": "Bills, charges and refunds."}},
            {"id": "help", "names": {"en": "Support", "it": "Assistenza"},
             "descriptions": {"en": "Calling support about a fault."}},
        ],
    },
}  # fmt: skip


def test_the_channel_is_echoed_normalised_and_an_unknown_one_is_said(fake_analyzer) -> None:  # type: ignore[no-untyped-def]
    docs = [
        DocumentInput(id="a", text="Ho chiamato tre volte, nessuno risponde.", channel="Telefono"),
        DocumentInput(id="b", text="Ho chiamato tre volte, nessuno risponde.", channel="piccione viaggiatore"),
        DocumentInput(id="c", text="Ho chiamato tre volte, nessuno risponde."),
    ]
    (a, b, c), errors = fake_analyzer.analyze(docs)
    assert not errors
    assert a.channel == "call_center" and not any("matches no touchpoint" in w for w in a.warnings)
    assert b.channel is None and any("matches no touchpoint" in w for w in b.warnings)
    assert c.channel is None
    # the touchpoints come from the text: the same text gives the same ones whatever the channel (unless it raised one)
    assert [t.id for t in b.touchpoints] == [t.id for t in c.touchpoints]
    assert all(t.from_channel is False for t in b.touchpoints + c.touchpoints)
    if a.touchpoints:
        assert a.touchpoints[0].primary


def test_an_exclusive_section_always_answers_with_one_entry_and_a_confidence(fake_analyzer) -> None:  # type: ignore[no-untyped-def]
    tax = parse_taxonomy(JOURNEY)
    texts = ["My bill doubled this month", "ok", "Vorrei attivare la fibra", "🙂", "Il tecnico non è mai venuto"]
    results, errors = fake_analyzer.analyze([DocumentInput(id=str(i), text=t) for i, t in enumerate(texts)], tax)
    assert not errors
    for r in results:
        assert len(r.touchpoints) == 1
        (tp,) = r.touchpoints
        assert tp.id in {"join", "pay", "help"} and tp.primary and tp.uncertain is not None
        assert 1 / 3 - 1e-6 <= tp.score <= 1.0  # the best of three entries has at least a third


def _calibrated(bundle):  # type: ignore[no-untyped-def]
    """The tiny bundle plus hand-made touchpoint heads and an exclusive calibration (what training fits)."""
    import dataclasses

    rng = np.random.default_rng(0)
    d = bundle.dim
    tp = LinearHead(kind="sigmoid", labels=["product_service", "billing"], weight=rng.normal(0, 1, (2, d)),
                    bias=np.zeros(2), thresholds=np.full(2, 0.5, np.float32))  # fmt: skip
    prim = LinearHead(kind="softmax", labels=["product_service", "billing", "none"], weight=rng.normal(0, 1, (3, d)),
                      bias=np.zeros(3))  # fmt: skip
    cal = ExclusiveCalibration(w_sim=10.0, w_concept=2.0, temperature=1.0, uncertain_below=0.5, center=bundle.center,
                               concepts=["touchpoint:product_service", "touchpoint:billing", "topic:staff"])  # fmt: skip
    return dataclasses.replace(bundle, touchpoints=tp, touchpoint_primary=prim, exclusive=cal,
                               touchpoints_fingerprint="not-the-default")  # fmt: skip


def test_a_calibrated_exclusive_section_uses_the_base_encoder_and_gets_sharper_with_examples(fake_analyzer) -> None:  # type: ignore[no-untyped-def]
    from voce.models.analyzer import Analyzer

    calls: list[list[str]] = []
    enc = fake_analyzer.encoder

    class Base:
        name, dim = "base", enc.dim

        def encode(self, texts, batch_size=32):  # type: ignore[no-untyped-def]
            calls.append(list(texts))
            return enc.encode(texts)

    a = Analyzer(enc, _calibrated(fake_analyzer.bundle), fake_analyzer.language_detector, base_encoder=Base)
    doc = [DocumentInput(id="1", text="the bill doubled and they charged me twice")]
    (r,), _ = a.analyze(doc, parse_taxonomy(JOURNEY))
    assert calls, "exclusive sections read the base encoder"
    zero_shot_conf = r.touchpoints[0].score
    with_examples = dict(JOURNEY)
    entries = [dict(e) for e in JOURNEY["touchpoints"]["entries"]]  # type: ignore[index]
    entries[1]["examples"] = ["the bill doubled and they charged me twice", "charged twice on my bill"]
    entries[0]["examples"] = ["I want to activate the fibre line"]
    entries[2]["examples"] = ["the engineer never came to fix the fault"]
    with_examples["touchpoints"] = {"mode": "single", "entries": entries}
    (r2,), _ = a.analyze(doc, parse_taxonomy(with_examples))
    assert r2.touchpoints[0].id == "pay"
    assert r2.touchpoints[0].score >= zero_shot_conf or r.touchpoints[0].id != "pay"
