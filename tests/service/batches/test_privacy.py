"""A stored row holds no personal data (redact/mask) or all of it (keep), while the analysis reads the original:
evidence spans still point at the right characters of the stored text, and the labels do not depend on the
redaction."""
from __future__ import annotations

import json
from typing import Any

import pytest

from voce.models.types import DocumentInput, Turn
from voce.service.batches.runner import analyze_chunk
from voce.service.privacy import Redactor
from voce.service.uploads import ColumnMapping, PreparedRow, prepare_row

MAPPING = ColumnMapping(text="commento", id="email", nps="nps", segments=["Nome"])
PERSONAL = ("Mario Rossi", "mario.rossi@example.com", "333 123 4567", "RSSMRA85T10A562S", "IT60 X054 2811",
            "4111 1111 1111 1111", "Giulia")
RECORD = {
    "email": "mario.rossi@example.com", "Nome": "Mario Rossi", "nps": "2x",
    "commento": "Il personale è stato scortese e maleducato alla reception. Mi chiamo Mario Rossi, codice fiscale "
                "RSSMRA85T10A562S: richiamatemi al 333 123 4567. Rimborso sull'IBAN IT60 X054 2811 1010 0000 0123 456 "
                "o sulla carta 4111 1111 1111 1111. La camera era sporca e puzzava.",
}


def _record(analyzer: Any, mode: str, record: dict[str, Any] = RECORD) -> dict[str, Any]:
    return analyze_chunk(analyzer, [prepare_row(0, record, MAPPING)], Redactor(mode))[0]  # type: ignore[arg-type]


def _evidence(res: dict[str, Any]) -> list[dict[str, Any]]:
    spans = list(res.get("sentences", []))
    for item in res.get("topics", []) + res.get("touchpoints", []):
        spans += item["evidence"]
    chat = res.get("chat") or {}
    spans += chat.get("turns", []) + chat.get("escalation_evidence", [])
    spans += [s["evidence"] for s in chat.get("effort_signals", [])]
    return spans


def test_redact_leaves_no_personal_data_anywhere_in_the_row(fake_analyzer: Any) -> None:
    rec = _record(fake_analyzer, "redact")
    stored = json.dumps({k: v for k, v in rec.items() if k != "embedding"}, ensure_ascii=False, default=str)
    for value in PERSONAL:
        assert value not in stored, value
    assert rec["doc_id"] == rec["result"]["id"] == "<EMAIL>"  # the id column is named "email": redacted whole
    assert rec["original"]["Nome"] == "<NAME>" and rec["segments"] == {"Nome": "<NAME>"}
    assert rec["original"]["commento"] == rec["text"]
    for kind in ("<NAME>", "<CODICE_FISCALE>", "<PHONE>", "<IBAN>", "<CARD>"):
        assert kind in rec["text"]
    assert rec["warnings"]  # the bad nps answer is still reported ...
    assert "2x" in rec["warnings"][0]  # ... its value is not personal data


def test_evidence_points_at_the_same_words_in_the_stored_text(fake_analyzer: Any) -> None:
    plain = _record(fake_analyzer, "keep")
    red = _record(fake_analyzer, "redact")
    redactor = Redactor("redact")
    assert plain["text"] == RECORD["commento"] and red["text"] != plain["text"]
    assert len(_evidence(red["result"])) == len(_evidence(plain["result"])) > 3
    for before, after in zip(_evidence(plain["result"]), _evidence(red["result"]), strict=True):
        was = plain["text"][before["offset"] : before["offset"] + before["length"]]
        now = red["text"][after["offset"] : after["offset"] + after["length"]]
        assert now == redactor.string(was), (was, now)  # the same words, redacted the same way
    for s in red["result"]["sentences"]:
        assert s["text"] == red["text"][s["offset"] : s["offset"] + s["length"]]
    assert red["result"]["topics"] and red["result"]["topics"][0]["evidence"]


def test_mask_keeps_every_offset(fake_analyzer: Any) -> None:
    plain, masked = _record(fake_analyzer, "keep"), _record(fake_analyzer, "mask")
    assert len(masked["text"]) == len(plain["text"])
    assert [(e["offset"], e["length"]) for e in _evidence(masked["result"])] == [
        (e["offset"], e["length"]) for e in _evidence(plain["result"])]
    assert "M**** R****" in masked["text"] and "**** **** **** 1111" in masked["text"]
    assert masked["doc_id"] == "m****.*****@e******.com"


def test_keep_stores_the_row_as_written(fake_analyzer: Any) -> None:
    kept = _record(fake_analyzer, "keep")
    unredacted = analyze_chunk(fake_analyzer, [prepare_row(0, RECORD, MAPPING)])[0]  # type: ignore[arg-type]
    assert kept == unredacted and kept["original"] == RECORD


def test_a_chat_built_from_turns(fake_analyzer: Any) -> None:
    doc = DocumentInput(id="c1", kind="chat", turns=[
        Turn(speaker="Cliente", text="Buongiorno, sono Anna Neri, il rimborso non è arrivato. Voglio un responsabile!"),
        Turn(speaker="Operatore", text="Mi scriva a anna.neri@example.org il numero d'ordine, grazie."),
        Turn(speaker="Cliente", text="Ho già chiamato tre volte al 06 6982 1234, è la terza volta che lo ripeto."),
    ])
    p = PreparedRow(0, doc, {"turns": [t.model_dump() for t in doc.turns or []]}, [])
    plain = analyze_chunk(fake_analyzer, [p], Redactor("keep"))[0]
    red = analyze_chunk(fake_analyzer, [p], Redactor("redact"))[0]
    assert red["result"]["text"] == red["text"] and "Anna Neri" not in json.dumps(red, default=str)
    for value in ("anna.neri@example.org", "06 6982 1234"):
        assert value in plain["text"] and value not in json.dumps(red["original"]) and value not in red["text"]
    for before, after in zip(_evidence(plain["result"]), _evidence(red["result"]), strict=True):
        was = plain["text"][before["offset"] : before["offset"] + before["length"]]
        assert red["text"][after["offset"] : after["offset"] + after["length"]] == Redactor("redact").string(was)
    assert [t["speaker"] for t in red["result"]["chat"]["turns"]] == ["Cliente", "Operatore", "Cliente"]


#: comments of the tiny training corpus with personal data around them: what the heads learned is in the words,
#: the personal data is not, so the labels must not move when it is replaced
WITH_PII = [
    "Il personale è stato gentilissimo e disponibile. Sono Mario Rossi, chiamatemi al 333 123 4567.",
    "Personale scortese e maleducato alla reception. Scrivete a giulia.neri@example.it",
    "The room was dirty and smelly. My name is John Smith, card 4111 1111 1111 1111.",
    "Great value for money. Regards, Emily Clarke",
    "Il volo è stato cancellato senza preavviso. IBAN per il rimborso IT60 X054 2811 1010 0000 0123 456.",
    "Prezzo troppo alto per quello che offre. Codice fiscale RSSMRA85T10A562S.",
]


def _labels(analyzer: Any, texts: list[str]) -> list[tuple[str, list[str]]]:
    """Sentiment and the topic ids, highest score first."""
    results, errors = analyzer.analyze([DocumentInput(id=str(i), text=t) for i, t in enumerate(texts)])
    assert not errors
    return [(r.sentiment.label, [t.id for t in sorted(r.topics, key=lambda t: -t.score)]) for r in results]


def test_labels_are_the_same_on_the_redacted_text(fake_analyzer: Any) -> None:
    before = _labels(fake_analyzer, WITH_PII)
    for mode in ("redact", "mask"):
        changed = [Redactor(mode).string(t) for t in WITH_PII]  # type: ignore[arg-type]
        assert all(c != t for c, t in zip(changed, WITH_PII, strict=True))
        after = _labels(fake_analyzer, changed)
        assert [s for s, _ in after] == [s for s, _ in before]
        assert [sorted(t) for _, t in after] == [sorted(t) for _, t in before]


@pytest.mark.real_model
@pytest.mark.slow
def test_labels_on_the_redacted_text_with_the_real_model(real_analyzer: Any) -> None:
    """The real encoder reads placeholders too: on these comments the sentiment and the main topic stay, while a
    weak extra topic may appear (e.g. customer_service at 0.38 next to "chiamatemi al <PHONE>").  On shorter texts
    made mostly of personal data the labels move more: benchmarks/privacy_labels.py measures it (MODEL_CARD.md),
    and it is why stored labels always come from the original text."""
    before = _labels(real_analyzer, WITH_PII)
    after = _labels(real_analyzer, [Redactor("redact").string(t) for t in WITH_PII])
    assert [s for s, _ in after] == [s for s, _ in before]
    assert [t[:1] for _, t in after] == [t[:1] for _, t in before]
