"""The shipped bundle on the real e5 encoder (ONNX), on the obvious cases a user checks first."""
from __future__ import annotations

import pytest

from voce.models.types import DocumentInput

pytestmark = [pytest.mark.real_model, pytest.mark.slow]

FURIOUS_IT = (
    "Vergognoso! Ho chiamato il call center cinque volte, l'operatore mi ha messo in attesa 40 minuti "
    "e poi ha chiuso la chiamata. Nessuno risolve niente, non vi consiglierò mai a nessuno."
)
HAPPY_EN = "The parcel arrived a day early and the courier was really friendly. Great delivery, thank you!"
CHAT = (
    "Cliente: Buongiorno, il mio ordine doveva arrivare lunedì e non è ancora arrivato\n"
    "Operatore: Mi dispiace, verifico subito lo stato della spedizione\n"
    "Cliente: è la terza volta che scrivo, sono stufo, voglio parlare con un responsabile\n"
    "Operatore: La trasferisco al mio supervisore\n"
)


@pytest.fixture(scope="module")
def results(real_analyzer):  # type: ignore[no-untyped-def]
    docs = [
        DocumentInput(id="furious", text=FURIOUS_IT),
        DocumentInput(id="happy", text=HAPPY_EN),
        DocumentInput(id="chat", kind="chat", text=CHAT),
    ]
    out, errors = real_analyzer.analyze(docs)
    assert errors == []
    return {r.id: r for r in out}


def test_furious_italian_call_center_complaint(results) -> None:  # type: ignore[no-untyped-def]
    r = results["furious"]
    assert r.language == "it"
    assert r.sentiment.label == "negative" and r.sentiment.scores.negative > 0.6
    assert "call_center" in [t.id for t in r.touchpoints]
    assert r.detractor.probability > 0.7


def test_happy_english_delivery_comment(results) -> None:  # type: ignore[no-untyped-def]
    r = results["happy"]
    assert r.language == "en"
    assert r.sentiment.label == "positive" and r.sentiment.scores.positive > 0.6
    assert "delivery" in [t.id for t in r.touchpoints] + [t.id for t in r.topics]
    assert r.detractor.probability < 0.3


def test_chat_transcript_reflects_the_customer(results) -> None:  # type: ignore[no-untyped-def]
    r = results["chat"]
    assert r.chat is not None and r.language == "it"
    assert [t.role for t in r.chat.turns] == ["customer", "agent", "customer", "agent"]
    assert r.sentiment.label in ("negative", "mixed")
    assert r.chat.trajectory["last"] == "negative"
    assert r.chat.escalation_requested
    assert {"repeat_contact", "transfer"} <= {s.kind for s in r.chat.effort_signals}
    assert r.detractor.probability > 0.5


def test_the_channel_is_its_own_fact_and_only_confirms_what_the_text_supports(real_analyzer) -> None:  # type: ignore[no-untyped-def]
    """The issue's example: a broken lift reported through the app is about the store, not the app."""
    docs = [
        DocumentInput(id="lift", text="Un ascensore era fuori servizio e nessuno sapeva quando l'avrebbero riparato.",
                      channel="app"),
        DocumentInput(id="crash", text="Si blocca ogni volta che provo ad aprirla.", channel="app"),
    ]  # fmt: skip
    (lift, crash), errors = real_analyzer.analyze(docs)
    assert not errors
    assert lift.channel == crash.channel == "mobile_app"
    assert "mobile_app" not in [t.id for t in lift.touchpoints]
    # "it freezes every time I open it" supports the app; the channel may settle it, never invent it
    for t in crash.touchpoints:
        assert not t.from_channel or t.id == "mobile_app"


def test_detractor_is_monotone_with_worse_text(real_analyzer) -> None:  # type: ignore[no-untyped-def]
    texts = [
        "Servizio eccellente, personale gentilissimo, tornerò sicuramente!",
        "Servizio nella norma, niente di speciale.",
        "Servizio pessimo, personale scortese, non tornerò mai più. Una vergogna.",
    ]
    out, _ = real_analyzer.analyze([DocumentInput(id=str(i), text=t, language="it") for i, t in enumerate(texts)])
    p = [r.detractor.probability for r in out]
    assert p[0] < p[1] < p[2], p


def test_batch_equals_one_at_a_time(real_analyzer) -> None:  # type: ignore[no-untyped-def]
    docs = [DocumentInput(id=str(i), text=t) for i, t in enumerate([FURIOUS_IT, HAPPY_EN, "Prezzi troppo alti."])]
    batch, _ = real_analyzer.analyze(docs)
    single = [real_analyzer.analyze([d])[0][0] for d in docs]
    for a, b in zip(batch, single, strict=True):
        assert a.sentiment.label == b.sentiment.label
        assert abs(a.detractor.probability - b.detractor.probability) < 1e-4
        assert [t.id for t in a.topics] == [t.id for t in b.topics]
