"""The word-embedding table lives outside the ONNX session, and the vectors are the ones the in-graph table gives."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voce.models.encoders.onnx_backend import (
    EMBEDDINGS_FILENAME,
    META_FILENAME,
    MODEL_FILENAME,
    EmbeddingRows,
    OnnxEncoder,
    export_onnx,
)

pytestmark = [pytest.mark.real_model, pytest.mark.slow]

TEXTS = [
    "Il pacco è arrivato in ritardo e la scatola era danneggiata. Il corriere non ha nemmeno suonato.",
    "Servizio clienti gentilissimo, mi hanno risolto il problema subito!",
    "The delivery was late and the box was damaged. Support never answered my emails.",
    "ok",
    "",
    "Der Kundendienst hat nie geantwortet, sehr enttäuschend.",
    "Le colis est arrivé en retard.",
    "服务很好，但是价格太贵了。",
    "Доставка опоздала на неделю.",
    "الخدمة كانت سيئة جدا",
    "👍👍 grazie 🙏",
    # longer than one 512-token window: the windowed path
    " ".join(["La camera era pulita ma il personale alla reception è stato scortese e lento."] * 60),
]


@pytest.fixture(scope="module")
def exports(e5_checkpoint: Path, voce_cache_dir: Path) -> dict[str, Path]:
    out = voce_cache_dir / "onnx"
    return {"external": export_onnx(e5_checkpoint, out), "graph": export_onnx(e5_checkpoint, out, embeddings="graph")}


@pytest.fixture(scope="module")
def encoders(exports: dict[str, Path]) -> dict[str, OnnxEncoder]:
    # a tiny row cache, so that most lookups in these tests go to the file and evictions happen
    return {
        "external": OnnxEncoder(exports["external"], embedding_cache_mb=0.05),
        "graph": OnnxEncoder(exports["graph"]),
    }


def test_table_is_not_in_the_session(exports: dict[str, Path], encoders: dict[str, OnnxEncoder]) -> None:
    import onnx

    external = encoders["external"]
    assert external.embedding_rows is not None
    assert [i.name for i in external._session.get_inputs()] == ["inputs_embeds", "attention_mask"]
    graph = onnx.load(str(exports["external"] / MODEL_FILENAME))
    vocab_rows = external.embedding_rows.rows
    biggest = max(int(np.prod(init.dims)) for init in graph.graph.initializer)
    # the largest weight left is a feed-forward matrix (1536 x 384), a small fraction of the table
    assert biggest * 10 < vocab_rows * external.dim, "a vocabulary-sized initializer is still inside the graph"
    assert not any(init.dims and init.dims[0] == vocab_rows for init in graph.graph.initializer)
    table = exports["external"] / EMBEDDINGS_FILENAME
    assert table.stat().st_size == vocab_rows * external.dim * 4
    assert (exports["external"] / MODEL_FILENAME).stat().st_size < table.stat().st_size / 3
    # the reference layout really is the old one
    assert encoders["graph"].embedding_rows is None
    assert [i.name for i in encoders["graph"]._session.get_inputs()][0] == "input_ids"
    assert '"embeddings": null' in (exports["graph"] / META_FILENAME).read_text(encoding="utf-8")


def test_vectors_identical_to_the_in_graph_table(encoders: dict[str, OnnxEncoder]) -> None:
    external, graph = encoders["external"], encoders["graph"]
    assert external.token_ids(TEXTS) == graph.token_ids(TEXTS)
    assert external.token_counts(TEXTS) == graph.token_counts(TEXTS)
    a, b = external.encode(TEXTS, batch_size=4), graph.encode(TEXTS, batch_size=4)
    assert a.shape == b.shape == (len(TEXTS), external.dim)
    assert float(np.abs(a - b).max()) <= 1e-6
    ids = np.array([[0, 35378, 9, 2, 1], [0, 6, 88, 2000, 2]], dtype=np.int64)
    mask = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=np.int64)
    assert float(np.abs(external._run_states(ids, mask) - graph._run_states(ids, mask)).max()) <= 1e-6


def test_spans_identical_to_the_in_graph_table(encoders: dict[str, OnnxEncoder]) -> None:
    texts = [t for t in TEXTS if t]
    spans = [[(0, max(1, len(t) // 2)), (len(t) // 2, len(t) - len(t) // 2)] for t in texts]
    docs_a, spans_a = encoders["external"].encode_spans(texts, spans)
    docs_b, spans_b = encoders["graph"].encode_spans(texts, spans)
    assert float(np.abs(docs_a - docs_b).max()) <= 1e-6
    assert max(float(np.abs(x - y).max()) for x, y in zip(spans_a, spans_b, strict=True)) <= 1e-6
    # the text vectors from encode_spans are encode()'s
    assert float(np.abs(docs_a - encoders["external"].encode(texts)).max()) <= 1e-6


def test_embedding_rows_are_exact_and_the_cache_is_bounded(exports: dict[str, Path]) -> None:
    path = exports["external"] / EMBEDDINGS_FILENAME
    dim = 384
    rows_total = path.stat().st_size // (dim * 4)
    rows = EmbeddingRows(path, rows_total, dim, cache_mb=8 * dim * 4 / 2**20)  # room for 8 rows
    assert rows.capacity == 8
    ids = np.array([[0, 5, 5, 250_000 % rows_total, 17], [1, 2, 3, 17, rows_total - 1]], dtype=np.int64)
    for _ in range(3):  # misses, then hits, with evictions in between
        got = rows.lookup(ids)
        assert got.shape == (2, 5, dim)
        for token in np.unique(ids):
            expected = np.fromfile(path, dtype="<f4", count=dim, offset=int(token) * dim * 4)
            assert np.array_equal(got[ids == token][0], expected)
        assert len(rows._slots) <= rows.capacity
    assert rows.hits > 0 and rows.misses > 0
    with pytest.raises(IndexError):
        rows.lookup(np.array([rows_total]))
    no_cache = EmbeddingRows(path, rows_total, dim, cache_mb=0)
    assert np.array_equal(no_cache.lookup(ids), rows.lookup(ids))
    assert no_cache.capacity == 0 and not no_cache._slots
    rows.close()
    no_cache.close()


def test_encoders_share_one_tokenizer(exports: dict[str, Path], encoders: dict[str, OnnxEncoder]) -> None:
    # same tokenizer.json content in both exports: one ~280 MB tokenizer in the process, not two
    assert encoders["external"]._tokenizer is encoders["graph"]._tokenizer
