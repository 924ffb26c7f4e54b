"""Modes and offsets: redact/mask/keep, masks keep the shape, edits move any span onto the redacted text."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voce.service.privacy import Redactor, column_kind, mask
from voce.service.privacy.detect import Finding
from voce.service.privacy.redact import splice

TEXT = ("Sono Mario Rossi, scrivetemi a mario.rossi@example.com o chiamate il +39 333 123 4567; "
        "IBAN IT60 X054 2811 1010 0000 0123 456, carta 4111 1111 1111 1111.")


def test_redact_writes_each_kind_as_a_placeholder() -> None:
    red = Redactor("redact").text(TEXT)
    assert red.text == ("Sono <NAME>, scrivetemi a <EMAIL> o chiamate il <PHONE>; IBAN <IBAN>, carta <CARD>.")
    assert red.kinds == ["NAME", "EMAIL", "PHONE", "IBAN", "CARD"]


def test_mask_keeps_length_and_shape() -> None:
    red = Redactor("mask").text(TEXT)
    assert len(red.text) == len(TEXT)
    assert "M**** R****" in red.text and "m****.*****@e******.com" in red.text
    assert "+39 *** *** 4567" in red.text and "IT** **** **** **** **** ***3 456" in red.text
    assert "**** **** **** 1111" in red.text
    assert all(red.span(o, n) == (o, n) for o, n in [(0, 4), (5, 11), (31, 23), (54, 15)])  # positions never move


def test_keep_changes_nothing() -> None:
    red = Redactor("keep").text(TEXT)
    assert red.text == TEXT and red.edits == ()
    assert Redactor("keep").record({"email": "a@b.it", "nota": TEXT}) == {"email": "a@b.it", "nota": TEXT}


@pytest.mark.parametrize(("kind", "value", "masked"), [
    ("EMAIL", "jane.doe@example.co.uk", "j***.***@e******.**.uk"),
    ("PHONE", "3289876543", "******6543"),
    ("CARD", "5500-0000-0000-0004", "****-****-****-0004"),
    ("CODICE_FISCALE", "RSSMRA85T10A562S", "****************"),
    ("NAME", "Anna Maria della Valle", "A*** M**** d**** V****"),
])
def test_masks(kind: str, value: str, masked: str) -> None:
    assert mask(kind, value) == masked


def test_spans_move_onto_the_redacted_text() -> None:
    red = Redactor("redact").text(TEXT)
    # a span before, after and around personal data
    for original in ("Sono", "scrivetemi a", "o chiamate il", "carta"):
        o = TEXT.index(original)
        no, nl = red.span(o, len(original))
        assert red.text[no : no + nl] == original
    whole = red.span(0, len(TEXT))
    assert whole == (0, len(red.text))
    o = TEXT.index("Mario")  # a span that starts inside a name covers the whole placeholder
    no, nl = red.span(o + 2, 10)
    assert red.text[no : no + nl].startswith("<NAME>")


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_span_maps_inside_the_text_and_keeps_what_no_edit_touched(data: st.DataObject) -> None:
    text = "a" * 40
    cuts = sorted(data.draw(st.sets(st.integers(0, 40), max_size=6)))
    findings = [Finding(a, b, "EMAIL", 1.0) for a, b in zip(cuts[::2], cuts[1::2], strict=False) if b > a]
    red = splice(text, findings, data.draw(st.sampled_from(["redact", "mask"])))
    offset = data.draw(st.integers(0, 40))
    length = data.draw(st.integers(0, 40 - offset))
    no, nl = red.span(offset, length)
    assert 0 <= no <= no + nl <= len(red.text)
    touched = any(f.start < offset + length and offset < f.end for f in findings)
    if not touched:
        assert red.text[no : no + nl] == text[offset : offset + length]


@pytest.mark.parametrize(("header", "kind"), [
    ("Email", "EMAIL"), ("E-mail", "EMAIL"), ("Nome e cognome", "NAME"), ("first_name", "NAME"), ("Telefono", "PHONE"),
    ("Codice Fiscale", "CODICE_FISCALE"), ("P.IVA", "PARTITA_IVA"), ("IBAN", "IBAN"), ("indirizzo", "ADDRESS"),
    ("commento", None), ("product name", None), ("nps", None), ("telefono_cliente_note", None),
])
def test_column_names_that_announce_personal_data(header: str, kind: str | None) -> None:
    assert column_kind(header) == kind


def test_cells_and_nested_values() -> None:
    r = Redactor("redact")
    row = {"Nome": "Giulia Neri", "Email": "giulia@example.it", "regione": "nord", "nps": 9,
           "turns": [{"speaker": "Cliente", "text": "chiamatemi al 333 123 4567"}]}
    assert r.record(row) == {"Nome": "<NAME>", "Email": "<EMAIL>", "regione": "nord", "nps": 9,
                             "turns": [{"speaker": "Cliente", "text": "chiamatemi al <PHONE>"}]}
    assert Redactor("mask").record({"Nome": "Giulia Neri"}) == {"Nome": "G***** N***"}
