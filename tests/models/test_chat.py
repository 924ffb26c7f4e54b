from __future__ import annotations

import pytest

from voce.models.chat import (
    EFFORT_KINDS,
    ChatTurn,
    classify_roles,
    customer_turns,
    detect_signals,
    parse_transcript,
    render_turns,
)


def _assert_offsets(text: str, turns: list[ChatTurn]) -> None:
    for t in turns:
        assert text[t.offset : t.offset + t.length] == t.text


# ------------------------------------------------------------------ parsing
@pytest.mark.parametrize(
    "line",
    [
        "Cliente: il pacco non è arrivato",
        "[10:32] Cliente: il pacco non è arrivato",
        "[2024-03-01 10:32:05] Cliente: il pacco non è arrivato",
        "10:32 - Cliente: il pacco non è arrivato",
        "10:32:05 | Cliente: il pacco non è arrivato",
        "01/03/24, 10:32 - Cliente: il pacco non è arrivato",
        "Cliente (10:32): il pacco non è arrivato",
        "  Cliente :   il pacco non è arrivato  ",
    ],
)
def test_line_formats(line: str) -> None:
    text = "Operatore: buongiorno\n" + line + "\nOperatore: mi dispiace"
    turns = parse_transcript(text)
    assert [(t.speaker, t.text) for t in turns] == [
        ("Operatore", "buongiorno"), ("Cliente", "il pacco non è arrivato"), ("Operatore", "mi dispiace"),
    ]
    _assert_offsets(text, turns)


def test_continuation_lines_and_preamble() -> None:
    text = (
        "Trascrizione chat #4411\n"
        "\n"
        "[10:32] Giulia Rossi: Salve, il mio ordine non è arrivato.\n"
        "Nota: l'ho pagato con PayPal.\n"
        "   \n"
        "Vedete https://example.com/ordine/123\n"
        "[10:33] Marco: Verifico subito.\n"
    )
    turns = parse_transcript(text)
    assert [t.speaker for t in turns] == ["Giulia Rossi", "Marco"]
    assert turns[0].text == (
        "Salve, il mio ordine non è arrivato.\nNota: l'ho pagato con PayPal.\n   \nVedete https://example.com/ordine/123"
    )
    assert all(t.role == "unknown" for t in turns)
    _assert_offsets(text, turns)


def test_untimed_transcript_continuations() -> None:
    text = "Customer: Hi\nmy order is late\nAgent: Sorry about that!\nhttps://example.com: tracking"
    turns = parse_transcript(text)
    assert [(t.speaker, t.text) for t in turns] == [
        ("Customer", "Hi\nmy order is late"), ("Agent", "Sorry about that!\nhttps://example.com: tracking"),
    ]
    assert parse_transcript("Nota bene, il pacco: aperto\nSolo testo senza parlanti") == []
    assert parse_transcript("") == []


def test_empty_message_and_crlf() -> None:
    text = "Agent:\r\nHello there\r\nCustomer: hi\r\n"
    turns = parse_transcript(text)
    assert [(t.speaker, t.text) for t in turns] == [("Agent", "Hello there"), ("Customer", "hi")]
    _assert_offsets(text, turns)


def test_render_turns_offsets() -> None:
    text, turns = render_turns([("Cliente", "  il pacco è rotto "), ("Operatore", "Mi dispiace.\nLo sostituiamo."),
                                ChatTurn("Bot", "Valuta la chat", role="bot")])
    assert text == "Cliente: il pacco è rotto\nOperatore: Mi dispiace.\nLo sostituiamo.\nBot: Valuta la chat"
    assert [t.role for t in turns] == ["unknown", "unknown", "bot"]
    _assert_offsets(text, turns)
    assert parse_transcript(text)[0].offset == turns[0].offset


# -------------------------------------------------------------------- roles
def _roles(turns: list[tuple[str, str]]) -> dict[str, str]:
    _, rendered = render_turns(turns)
    return {t.speaker: t.role for t in classify_roles(rendered)}


@pytest.mark.parametrize(
    ("speaker", "role"),
    [
        ("Cliente", "customer"), ("Customer", "customer"), ("Utente", "customer"), ("User", "customer"),
        ("Io", "customer"), ("Me", "customer"), ("Cliente (Mario Rossi)", "customer"),
        ("Operatore", "agent"), ("Operatrice Giulia", "agent"), ("Agent Sarah", "agent"), ("Agente", "agent"),
        ("Assistente", "agent"), ("Support", "agent"), ("Supporto tecnico", "agent"), ("Consulente", "agent"),
        ("Customer Service", "agent"), ("Servizio Clienti", "agent"), ("Rep", "agent"), ("Staff", "agent"),
        ("Bot", "bot"), ("Chatbot", "bot"), ("Assistente virtuale", "bot"), ("Virtual Assistant", "bot"),
        ("Automated", "bot"), ("Sistema", "system"), ("System", "system"),
    ],
)
def test_role_from_speaker_name(speaker: str, role: str) -> None:
    assert _roles([(speaker, "…")])[speaker] == role


def test_unknown_name_agent_from_greeting_it() -> None:
    roles = _roles([
        ("Marco", "Buongiorno, sono Marco del servizio clienti. Come posso aiutarla?"),
        ("Giulia", "Salve, il pacco non è mai arrivato."),
    ])
    assert roles == {"Marco": "agent", "Giulia": "customer"}


def test_unknown_name_agent_from_greeting_en() -> None:
    roles = _roles([("Dana", "hello?"), ("Sam", "Hi, thanks for contacting Acme! How can I help you today?")])
    assert roles == {"Dana": "customer", "Sam": "agent"}


def test_the_other_of_two_is_the_opposite() -> None:
    assert _roles([("Laura", "Salve"), ("Cliente", "Ciao")]) == {"Laura": "agent", "Cliente": "customer"}
    assert _roles([("Operatore", "Salve"), ("Paolo", "Ciao")]) == {"Operatore": "agent", "Paolo": "customer"}


def test_first_unknown_speaker_is_the_customer() -> None:
    roles = _roles([("Anna", "Ciao"), ("Luca", "Salve"), ("Bot", "Valuta la chat")])
    assert roles == {"Anna": "customer", "Luca": "agent", "Bot": "bot"}


def test_given_roles_are_kept_and_customer_turns() -> None:
    turns = classify_roles([ChatTurn("Cliente", "ciao", role="agent"), ChatTurn("Paolo", "ciao")])
    assert [t.role for t in turns] == ["agent", "customer"]
    assert customer_turns(turns) == [turns[1]]


# ------------------------------------------------------------------ signals
@pytest.mark.parametrize(
    ("message", "evidence"),
    [
        ("Voglio parlare con un responsabile!", "parlare con un responsabile"),
        ("Mi passi il suo superiore per favore", "Mi passi il suo superiore"),
        ("voglio parlare con un operatore umano", "parlare con un operatore"),
        ("Farò un reclamo formale.", "reclamo"),
        ("Se non risolvete disdico il contratto", "disdico"),
        ("Basta, passo alla concorrenza", "passo alla concorrenza"),
        ("Mi rivolgerò al mio avvocato", "avvocato"),
        ("I want to speak to a manager", "speak to a manager"),
        ("Get me a supervisor now", "Get me a supervisor"),
        ("I'll file a formal complaint", "file a formal complaint"),
        ("I'm going to cancel my subscription", "cancel my subscription"),
        ("I'm switching to a competitor", "switching to a competitor"),
        ("You'll be hearing from my lawyer", "lawyer"),
    ],
)
def test_escalation(message: str, evidence: str) -> None:
    text, turns = render_turns([("Operatore", "Buongiorno, come posso aiutarla?"), ("Cliente", message)])
    signals = detect_signals(turns)
    assert signals.escalation_requested
    assert any(evidence in text[o : o + n] for o, n in signals.escalation_evidence)


def test_no_signals_in_a_calm_chat() -> None:
    _, turns = render_turns([
        ("Operatore", "Buongiorno, sono Marco del servizio clienti. Come posso aiutarla?"),
        ("Cliente", "Vorrei sapere quando arriva il mio ordine, l'ho fatto ieri."),
        ("Operatore", "Arriverà domani. Il nostro responsabile logistico ha confermato."),
        ("Cliente", "Perfetto, grazie mille! Il servizio è ottimo."),
        ("Agent", "Thanks for waiting, how can I help?"),
        ("Customer", "I called yesterday and the manager was very kind. All good now."),
    ])
    signals = detect_signals(turns)
    assert not signals.escalation_requested
    assert signals.escalation_evidence == []
    assert signals.effort_signals == []


EFFORT_CASES = [
    ("repeat_contact", "Cliente", "Ho già chiamato tre volte per questo problema", "Ho già chiamato tre volte"),
    ("repeat_contact", "Cliente", "È la terza volta che scrivo!", "È la terza volta che"),
    ("repeat_contact", "Customer", "I've called 3 times about this", "I've called 3 times"),
    ("repeat_contact", "Customer", "This is the second time I'm contacting you", "This is the second time"),
    ("transfer", "Operatore", "Attenda, ti passo un collega del reparto tecnico.", "ti passo un collega"),
    ("transfer", "Operatore", "La trasferisco all'ufficio reclami.", "La trasferisco"),
    ("transfer", "Agent", "Let me transfer you to our billing team.", "transfer you to"),
    ("transfer", "Cliente", "Mi hanno già trasferito da un operatore all'altro", "Mi hanno già trasferito"),
    ("transfer", "Customer", "I was transferred 4 times today", "transferred"),
    ("long_wait", "Cliente", "Sono in attesa da 40 minuti", "in attesa da 40 minuti"),
    ("long_wait", "Cliente", "Ho aspettato più di un'ora al telefono", "Ho aspettato più di un'ora"),
    ("long_wait", "Customer", "I was on hold for an hour", "on hold for an hour"),
    ("long_wait", "Customer", "Still waiting for my refund", "Still waiting"),
    ("repeat_information", "Cliente", "Vi ho già dato il numero d'ordine!", "Vi ho già dato"),
    ("repeat_information", "Cliente", "Ve l’ho già detto ieri", "Ve l’ho già detto"),
    ("repeat_information", "Customer", "I already told you my account number", "I already told"),
    ("repeat_information", "Customer", "As I said, the box was empty", "As I said"),
    ("channel_switch", "Cliente", "Ho dovuto scrivere anche via email", "anche via email"),
    ("channel_switch", "Cliente", "Sono andata anche in negozio ma niente", "Sono andata anche in negozio"),
    ("channel_switch", "Customer", "I also emailed your support twice", "also emailed"),
    ("channel_switch", "Customer", "I reached out on Twitter last week", "reached out on Twitter"),
    ("unresolved", "Cliente", "Il problema non è stato risolto", "non è stato risolto"),
    ("unresolved", "Cliente", "Ancora non funziona niente", "Ancora non funziona"),
    ("unresolved", "Customer", "It's still not fixed", "still not fixed"),
    ("unresolved", "Customer", "The issue persists after the update", "issue persists"),
]


@pytest.mark.parametrize(("kind", "speaker", "message", "evidence"), EFFORT_CASES)
def test_effort_signals(kind: str, speaker: str, message: str, evidence: str) -> None:
    other = "Agent" if speaker in ("Cliente", "Customer") else "Customer"
    text, turns = render_turns([(other, "ok"), (speaker, message)])
    signals = detect_signals(turns)
    assert any(e.kind == kind and evidence in e.text for e in signals.effort_signals), signals.effort_signals
    for e in signals.effort_signals:
        assert text[e.offset : e.offset + e.length] == e.text
        assert e.turn_index == 1


def test_every_kind_is_covered_in_both_languages() -> None:
    for kind in EFFORT_KINDS:
        speakers = {s for k, s, *_ in EFFORT_CASES if k == kind}
        assert speakers & {"Cliente", "Operatore"} and speakers & {"Customer", "Agent"}, kind


def test_agent_text_only_evidences_transfers() -> None:
    _, turns = render_turns([
        ("Cliente", "Salve"),
        ("Operatore", "Capisco che ha già chiamato tre volte e che il problema non è stato risolto."),
    ])
    assert detect_signals(turns).effort_signals == []


def test_offsets_in_a_parsed_transcript() -> None:
    text = (
        "[10:32] Marco: Buongiorno, sono Marco del servizio clienti.\n"
        "[10:33] Giulia: Il mio ordine non arriva, ho già chiamato tre volte.\n"
        "Nota: vi ho già dato il numero d'ordine!\n"
        "[10:35] Marco: Mi scusi, la trasferisco a un collega.\n"
        "[10:50] Giulia: In attesa da 40 minuti. Voglio parlare con un responsabile.\n"
    )
    turns = classify_roles(parse_transcript(text))
    assert [t.role for t in turns] == ["agent", "customer", "agent", "customer"]
    signals = detect_signals(turns)
    assert [(e.kind, text[e.offset : e.offset + e.length], e.turn_index) for e in signals.effort_signals] == [
        ("repeat_contact", "ho già chiamato tre volte", 1),
        ("repeat_information", "vi ho già dato", 1),
        ("transfer", "la trasferisco", 2),
        ("long_wait", "In attesa da 40 minuti", 3),
    ]
    assert [text[o : o + n] for o, n in signals.escalation_evidence] == ["parlare con un responsabile"]
