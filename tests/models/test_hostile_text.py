"""Hostile text through the inference core: invalid Unicode cleaned per document, pathological texts cut by
tokens, and the text parsers (sentences, chat headers, addresses) in linear time on inputs that used to take
minutes.  The slow inputs below finish in milliseconds now; with the old patterns they ran for many minutes,
so a regression shows as a hang (timings are recorded by ``benchmarks/hostile_inputs.py``, never asserted)."""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from voce.models import chat, language, segment
from voce.models.cleaning import clean_text, find_invalid
from voce.models.encoders.base import approximate_token_counts
from voce.models.types import DocumentInput, Turn

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # a dev extra; the hand-written cases still run
    given = None

EMOJI = "".join(chr(0x1F600 + i % 80) for i in range(1200))
NORMAL = (
    "Il call center mi ha lasciato in attesa quaranta minuti. Poi la linea è caduta! "
    "The parcel arrived two days late and the box was damaged. Support never answered my e-mail. "
) * 6


# ------------------------------------------------------------------ invalid Unicode
def test_invalid_code_points_are_replaced_one_for_one() -> None:
    text = "a\x00b\ud800c\udfffd\ufdd0e\uffff\U0010fffe f"
    cleaned, n = clean_text(text)
    assert n == 6 and len(cleaned) == len(text)  # offsets into the text stay valid
    assert cleaned == "a\ufffdb\ufffdc\ufffdd\ufffde\ufffd\ufffd f"
    cleaned.encode("utf-8")  # what failed before: a lone surrogate cannot be encoded
    assert find_invalid("ok 😍 è") is None and find_invalid("x\udc00") == "U+DC00"
    assert clean_text("ciao\x00 mondo", "") == ("ciao mondo", 1)


def test_a_document_cleans_every_text_field_and_remembers_which() -> None:
    d = DocumentInput(
        id="r\ud8001", text="pacco \x00 perso", channel="app\uffff",
        turns=[Turn(speaker="Cliente\udc00", text="ciao"), Turn(speaker="Agente", text="salve \ud83d")],
    )
    assert (d.id, d.text, d.channel) == ("r\ufffd1", "pacco \ufffd perso", "app\ufffd")
    assert d.turns is not None and d.turns[0].speaker == "Cliente\ufffd" and d.turns[1].text == "salve \ufffd"
    assert d.cleaned_fields == ("id", "text", "channel", "turns[0].speaker", "turns[1].text")
    assert d.model_copy(update={"id": "#0"}).cleaned_fields == d.cleaned_fields  # the batch runner re-ids copies
    assert DocumentInput(id="1", text="tutto ok 😍").cleaned_fields == ()


def test_a_document_with_invalid_characters_is_analysed_with_a_warning(fake_analyzer: Any) -> None:
    docs = [
        DocumentInput(id="bad\ud800", text="Il servizio \ud800 è stato pessimo.\x00 Mai più."),
        DocumentInput(id="chat", turns=[Turn(speaker="Cliente", text="il pacco \udfff non arriva")]),
    ]
    results, errors = fake_analyzer.analyze(docs)
    assert not errors and [r.id for r in results] == ["bad\ufffd", "chat"]
    assert any("U+FFFD in id, text" in w for w in results[0].warnings)
    assert any("U+FFFD in turns[0].text" in w for w in results[1].warnings)
    for r, d in zip(results, docs, strict=True):
        r.model_dump_json()  # serialisable: this raised (a 500) for a lone surrogate
        text = r.text or d.text or ""
        assert all(text[s.offset : s.offset + s.length] == s.text for s in r.sentences)


# ------------------------------------------------------------------ tokens, not characters
def test_the_token_estimate_counts_emoji_and_combining_marks_as_tokens() -> None:
    ordinary, emoji, marks = approximate_token_counts([NORMAL, EMOJI, "a" + "\u0301" * 1199])
    assert ordinary < len(NORMAL) / 3  # ~one token per word piece of ordinary text
    assert emoji == 1200 and marks == 1200  # one per symbol: what a real tokenizer makes of them too


def test_a_document_of_emoji_is_cut_at_the_token_limit_with_a_warning(fake_analyzer: Any) -> None:
    bounded = fake_analyzer.with_config(replace(fake_analyzer.config, max_tokens=300))
    docs = [DocumentInput(id="e", text=EMOJI + " Pessimo servizio."), DocumentInput(id="n", text=NORMAL)]
    assert len(EMOJI) < bounded.config.max_chars  # the character limit alone let it through
    assert bounded.document_tokens(docs) == [300, approximate_token_counts([NORMAL])[0]]
    (emoji, normal), errors = bounded.analyze(docs)
    assert not errors
    cut = [w for w in emoji.warnings if "cut to its first 300 tokens" in w]
    assert cut and "characters from" in cut[0]
    kept = int(re.search(r"characters from (\d+) on", cut[0]).group(1))  # type: ignore[union-attr]
    assert 0 < kept <= 300 and max(s.offset + s.length for s in emoji.sentences) <= kept
    assert not any("cut to" in w for w in normal.warnings)


def test_ordinary_text_gives_the_same_result_with_the_token_limit(fake_analyzer: Any) -> None:
    """The limit only ever cuts what ordinary text never reaches: results are identical to the byte."""
    unbounded = fake_analyzer.with_config(replace(fake_analyzer.config, max_tokens=10**9))
    docs = [
        DocumentInput(id="1", text=NORMAL[:5000]),
        DocumentInput(id="2", text="Ottimo servizio 😍😍 Tornerò presto 👍🏻", channel="app"),
        DocumentInput(id="3", kind="chat", text="Cliente: il pacco non è arrivato\nOperatore: verifico subito"),
    ]
    assert fake_analyzer.config.token_limit() == fake_analyzer.config.max_chars // 2
    a, b = fake_analyzer.analyze(docs), unbounded.analyze(docs)
    assert [r.model_dump_json() for r in a[0]] == [r.model_dump_json() for r in b[0]]


def test_chat_turns_are_cut_with_the_text_they_render(fake_analyzer: Any) -> None:
    bounded = fake_analyzer.with_config(replace(fake_analyzer.config, max_tokens=120))
    turns = [Turn(speaker="Cliente", text="Il pacco non arriva."), Turn(speaker="Agente", text="Verifico."),
             Turn(speaker="Cliente", text=" ".join(EMOJI[:300])), Turn(speaker="Agente", text="Mi scusi.")]
    (r,), errors = bounded.analyze([DocumentInput(id="c", turns=turns)])
    assert not errors and r.text is not None and r.chat is not None
    assert any("cut to its first 120 tokens" in w for w in r.warnings)
    assert [t.speaker for t in r.chat.turns] == ["Cliente", "Agente", "Cliente"]  # the last turn lies after the cut
    assert r.chat.turns[2].offset + r.chat.turns[2].length == len(r.text)  # the third one is cut short
    assert all(t.offset + t.length <= len(r.text) for t in r.chat.turns)


# ------------------------------------------------------------------ linear-time parsers
#: the sentence boundary pattern before it was made linear: the oracle the new one must agree with
_OLD_BOUNDARY = re.compile(
    rf"(?P<term>[.!?…]+|{segment._EMOJI}+)"
    r"[\"'”’»)\]]*"
    rf"(?:\s*{segment._EMOJI})*"
    r"(?=\s+(?P<next>\S)|\s*$)"
)
_OLD_TOKEN_BEFORE = re.compile(r"(\S+)$")


def _old_spans(text: str, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    with monkeypatch.context() as m:
        m.setattr(segment, "_BOUNDARY_RE", _OLD_BOUNDARY)
        m.setattr(segment, "_token_before", lambda t, s, e: (x := _OLD_TOKEN_BEFORE.search(t, s, e)) and x.group(1) or "")
        return [(s.offset, s.length) for s in segment.split_sentences(text)]


@pytest.mark.parametrize(
    "text",
    ["Ottimo servizio 😍😍 Tornerò presto 👍🏻", "Great :) Will come back :(", "Bello!😍x ok", "!!! Pessimo",
     "Ha detto \"basta.\" Poi è andato via.", "Sig. Rossi e dott. Bianchi. Ok", "a.b.c. d.e.f. G.", "x😍) Tornerò"],
)
def test_sentence_boundaries_are_what_they_were(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert [(s.offset, s.length) for s in segment.split_sentences(text)] == _old_spans(text, monkeypatch)


def test_runs_that_made_the_sentence_splitter_backtrack_are_split_at_once() -> None:
    # 2,000 emoji and a letter took 76 s (cubic); a sentence of 20,000 "Sig." was quadratic
    assert [s.text for s in segment.split_sentences("😍" * 6000 + "x")] == ["😍" * 6000 + "x"]
    assert len(segment.split_sentences(":)" * 20000 + "x ok")) == 1
    assert len(segment.split_sentences(("Sig. " * 20000).strip())) == 1
    assert [s.text for s in segment.split_sentences("Bene!" + "😍" * 6000 + " Tornerò")][-1] == "Tornerò"


def test_a_line_of_blanks_is_no_chat_header_and_costs_nothing() -> None:
    assert chat.parse_transcript("x" + "\t" * 200_000 + "x") == []
    assert [t.speaker for t in chat.parse_transcript("\t" * 50_000 + "Cliente: ciao\nAgente:  salve")] == [
        "Cliente", "Agente"]


def test_addresses_are_stripped_in_linear_time() -> None:
    # "@." repeated made the e-mail pattern backtrack in cubic time: 5,120 characters took minutes
    assert language.clean_for_detection("@." * 50_000 + " ciao") == "ciao"
    assert language.clean_for_detection("scrivi a mario.rossi@example.it o www.voce.it/faq, grazie") == "scrivi a o grazie"


if given is not None:
    _SENTENCE_ALPHABET = st.sampled_from(
        list("aZè ..!?…\n\t-•1)\"'(«»]:;DPp/<3") + ["😍", "👍🏻", "e.g.", "Sig.", ":)", ":-)", ";-D", "\u200d", "❤️", "T"]
    )

    @settings(max_examples=400, deadline=None)
    @given(st.lists(_SENTENCE_ALPHABET, max_size=40).map("".join))
    def test_sentence_boundaries_property(text: str) -> None:
        with pytest.MonkeyPatch.context() as mp:
            old = _old_spans(text, mp)
        assert [(s.offset, s.length) for s in segment.split_sentences(text)] == old

    _HEADER_ALPHABET = st.sampled_from(
        list("aZè :\t\n-–|[](),.12/") + ["10:32", "[10:32]", "01/03/24, ", "Cliente: ", "Agent (10:32): ", "  "]
    )
    _OLD_HEADER = re.compile(chat._HEADER_RE.pattern.replace("*+", "*"))

    @settings(max_examples=400, deadline=None)
    @given(st.lists(_HEADER_ALPHABET, max_size=30).map("".join))
    def test_chat_headers_property(text: str) -> None:
        def turns() -> list[tuple[str, int, int]]:
            return [(t.speaker, t.offset, t.length) for t in chat.parse_transcript(text)]

        new = turns()
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(chat, "_HEADER_RE", _OLD_HEADER)
            assert turns() == new

    _ADDRESS_ALPHABET = st.sampled_from(
        list("a@.Z_ é1/:-\n\u00a0") + ["www.", "WWW.", "http://", "https://", "@b.c", ".com", "😍"]
    )

    @settings(max_examples=600, deadline=None)
    @given(st.lists(_ADDRESS_ALPHABET, max_size=30).map("".join))
    def test_address_stripping_property(text: str) -> None:
        assert language._strip_addresses(text) == language._URL_RE.sub(" ", text)
