"""The token bound with the real tokenizer: emoji and combining marks are cut, ordinary long text is not, and the
results of ordinary text are identical to an analyzer without the bound (the shipped model over ONNX)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from voce.models.encoders.base import TokenCounter
from voce.models.types import DocumentInput

pytestmark = [pytest.mark.real_model, pytest.mark.slow]

#: a long review as customers write them (5,000 characters of distinct sentences)
_SENTENCES = [
    "Il volo è partito con tre ore di ritardo e nessuno ci ha spiegato il motivo.",
    "The staff at the gate were polite but could not tell us anything useful.",
    "Al check-in la fila era lunghissima e solo uno sportello era aperto.",
    "My suitcase arrived two days later, damaged, and the claim form was impossible to find on the app.",
    "Il rimborso promesso non è mai arrivato nonostante quattro e-mail al servizio clienti.",
    "Seats were comfortable and the meal was better than expected for a short flight.",
    "Ho chiamato il call center due volte: la prima è caduta la linea, la seconda mi hanno messo in attesa.",
    "Boarding was chaotic, with no announcements and the gate changed twice.",
]
LONG = " ".join(f"{s} ({i})" for i, s in enumerate(_SENTENCES * 8))[:5000]
EMOJI = "".join(chr(0x1F600 + i % 80) for i in range(5000))
MARKS = "a" + "\u0301" * 4999


def test_the_real_tokenizer_counts_and_cuts(real_analyzer: Any) -> None:
    assert isinstance(real_analyzer.encoder, TokenCounter)
    long_tokens, emoji_tokens, mark_tokens = real_analyzer.token_counts([LONG, EMOJI, MARKS])
    limit = real_analyzer.config.token_limit()
    assert limit == 2560 and long_tokens < limit / 2  # ordinary text (~0.23 tokens per character): far below
    assert emoji_tokens > 4000 and mark_tokens > 4000  # ~one token per character
    docs = [DocumentInput(id="long", text=LONG), DocumentInput(id="emoji", text=EMOJI + " Servizio pessimo."),
            DocumentInput(id="marks", text=MARKS)]
    assert real_analyzer.document_tokens(docs) == [long_tokens, limit, limit]
    (long, emoji, marks), errors = real_analyzer.analyze(docs)
    assert not errors
    assert not any("cut to" in w for w in long.warnings)
    for r in (emoji, marks):
        assert any(f"cut to its first {limit} tokens" in w for w in r.warnings), r.warnings


def test_ordinary_text_is_identical_with_and_without_the_bound(real_analyzer: Any) -> None:
    unbounded = real_analyzer.with_config(replace(real_analyzer.config, max_tokens=10**9))
    docs = [
        DocumentInput(id="1", text=LONG),
        DocumentInput(id="2", text="Ottimo servizio 😍😍 Tornerò presto 👍🏻", channel="app"),
        DocumentInput(id="3", kind="chat", text="Cliente: il pacco non è arrivato\nOperatore: verifico subito"),
    ]
    bounded_results, _ = real_analyzer.analyze(docs)
    unbounded_results, _ = unbounded.analyze(docs)
    assert [r.model_dump_json() for r in bounded_results] == [r.model_dump_json() for r in unbounded_results]
