"""Sentence vectors from the comment's own pass ("in_context") on the real encoder."""
from __future__ import annotations

import numpy as np
import pytest

from voce.models.analyzer import Analyzer, AnalyzerConfig
from voce.models.encoders.base import SpanEncoder
from voce.models.types import DocumentInput

pytestmark = [pytest.mark.real_model, pytest.mark.slow]

TEXT = "Il pacco è arrivato in ritardo. Il corriere è stato scortese, ma il prodotto è ottimo!"


def test_a_span_covering_the_whole_text_is_the_text_vector(real_analyzer: Analyzer) -> None:
    enc = real_analyzer.encoder
    assert isinstance(enc, SpanEncoder)
    docs, spans = enc.encode_spans([TEXT, "ok"], [[(0, len(TEXT)), (0, 31)], [(0, 2)]])
    np.testing.assert_allclose(docs, enc.encode([TEXT, "ok"]), atol=1e-5)
    np.testing.assert_allclose(spans[0][0], docs[0], atol=1e-5)
    np.testing.assert_allclose(spans[1][0], docs[1], atol=1e-5)
    alone = enc.encode([TEXT[:31]])[0]
    assert 0.3 < float(spans[0][1] @ alone) < 0.999  # the same sentence, read in its context


def test_in_context_analysis_keeps_single_sentence_documents_and_the_document_vector(real_analyzer: Analyzer) -> None:
    assert real_analyzer.config.sentence_vectors == "in_context"  # the default
    late = real_analyzer.with_config(AnalyzerConfig(sentence_vectors="in_context"))
    separate = real_analyzer.with_config(AnalyzerConfig(sentence_vectors="separate"))
    docs = [
        DocumentInput(id="1", text="Servizio clienti irraggiungibile"),
        DocumentInput(id="2", text=TEXT),
        DocumentInput(id="3", kind="chat", text="Cliente: il pacco non è arrivato. Sono furioso\nOperatore: verifico"),
    ]
    a_res, _, a_vec = separate.analyze_with_embeddings(docs)
    b_res, _, b_vec = late.analyze_with_embeddings(docs)
    np.testing.assert_allclose(a_vec, b_vec, atol=1e-5)
    assert a_res[0].model_dump() == b_res[0].model_dump()
    # document-level probabilities read the window, which is the same pass
    assert a_res[1].sentiment.scores == b_res[1].sentiment.scores
    assert a_res[1].detractor == b_res[1].detractor
    assert [s.offset for s in a_res[1].sentences] == [s.offset for s in b_res[1].sentences]
    assert b_res[2].chat is not None and [t.role for t in b_res[2].chat.turns] == [t.role for t in a_res[2].chat.turns]
