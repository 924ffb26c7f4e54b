"""The int8 ("fast") profile: a quantised copy of the fp32 graph, written once, close to the fp32 vectors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voce.models.encoders.factory import E5_SMALL_INT8_KEEP_FP32, EncoderSpec, encoder_name, load_encoder
from voce.models.encoders.onnx_backend import MODEL_FILENAME, OnnxEncoder, export_onnx, int8_graph_name, quantize_int8

TEXTS = [
    "Il pacco è arrivato in ritardo e la scatola era danneggiata. Il corriere non ha nemmeno suonato.",
    "Servizio clienti gentilissimo, mi hanno risolto il problema subito!",
    "The delivery was late and the box was damaged. Support never answered my emails.",
    "La bolletta di marzo è sbagliata, mi hanno addebitato due volte il canone.",
    "App keeps crashing when I try to pay, and the chatbot just loops.",
    "ok",
    "Personale del negozio scortese, non tornerò.",
    " ".join(["La camera era pulita ma il personale alla reception è stato scortese e lento."] * 60),
]


def test_precision_names_the_encoder_and_needs_onnx(tmp_path: Path) -> None:
    fp32 = EncoderSpec(cache_dir=tmp_path)
    int8 = fp32.model_copy(update={"precision": "int8"})
    # the name keys bundle manifests and embedding caches: int8 vectors must never be served from fp32's cache
    assert encoder_name(fp32) != encoder_name(int8)
    assert "precision=int8" in encoder_name(int8)
    with pytest.raises(ValueError, match="needs the onnx backend"):
        load_encoder(int8.model_copy(update={"backend": "torch"}))


def test_graph_name_records_the_recipe() -> None:
    assert int8_graph_name((5, 4)) == int8_graph_name((4, 5)) != int8_graph_name(None)
    assert int8_graph_name(()) .endswith("keep-none.onnx")


@pytest.fixture(scope="module")
def export_dir(e5_checkpoint: Path, voce_cache_dir: Path) -> Path:
    return export_onnx(e5_checkpoint, voce_cache_dir / "onnx")


@pytest.mark.real_model
@pytest.mark.slow
class TestOnE5:
    def test_written_once_with_the_named_projections_kept_fp32(self, export_dir: Path) -> None:
        import onnx

        path = quantize_int8(export_dir, E5_SMALL_INT8_KEEP_FP32)
        mtime = path.stat().st_mtime_ns
        assert quantize_int8(export_dir, E5_SMALL_INT8_KEEP_FP32) == path
        assert path.stat().st_mtime_ns == mtime  # reused, not rewritten
        assert not list(export_dir.glob(".int8.*"))  # no temporary file left behind
        ops = {n.name: n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
        for layer in range(12):
            name = f"/inner/encoder/layer.{layer}/output/dense/MatMul"
            if layer in E5_SMALL_INT8_KEEP_FP32:
                assert ops.get(name) == "MatMul"
            else:
                assert name not in ops and ops.get(f"{name}_quant") == "MatMulInteger"
        assert ops.get("/inner/encoder/layer.0/attention/self/query/MatMul_quant") == "MatMulInteger"
        assert path.stat().st_size < (export_dir / MODEL_FILENAME).stat().st_size / 2.5

    def test_unknown_layer_is_refused(self, export_dir: Path) -> None:
        with pytest.raises(ValueError, match="no layer"):
            quantize_int8(export_dir, (12,))

    def test_vectors_close_to_fp32(self, export_dir: Path) -> None:
        fp32 = OnnxEncoder(export_dir)
        int8 = OnnxEncoder(export_dir, graph=quantize_int8(export_dir, E5_SMALL_INT8_KEEP_FP32).name)
        a, b = fp32.encode(TEXTS), int8.encode(TEXTS)
        assert b.shape == a.shape and b.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
        cos = (a * b).sum(axis=1)
        # measured on 300 real comments: mean 0.994, lowest 0.978 (reports/perf/int8_recipe.json)
        assert cos.min() > 0.97 and cos.mean() > 0.985
        # the same span vectors path (late chunking) works on the int8 graph
        docs, spans = int8.encode_spans(TEXTS[:2], [[(0, 20), (21, 60)], [(0, 10)]])
        np.testing.assert_allclose(docs, b[:2], atol=1e-6)
        assert [s.shape for s in spans] == [(2, fp32.dim), (1, fp32.dim)]

    def test_a_comments_vector_does_not_depend_on_its_batch(self, export_dir: Path) -> None:
        # int8 activations get one scale per run: batched together, a short comment's vector would move with its
        # neighbours (cosine 0.974 on real texts); the encoder runs rows alone, so the same text = the same vector
        int8 = OnnxEncoder(export_dir, graph=quantize_int8(export_dir, E5_SMALL_INT8_KEEP_FP32).name)
        assert int8.row_by_row
        together = int8.encode(TEXTS, batch_size=32)
        alone = np.vstack([int8.encode([t]) for t in TEXTS])
        reordered = int8.encode(TEXTS[::-1], batch_size=3)[::-1]
        np.testing.assert_array_equal(together, alone)
        np.testing.assert_array_equal(together, reordered)

    def test_factory_builds_the_int8_profile(self, voce_cache_dir: Path) -> None:
        enc = load_encoder(EncoderSpec(cache_dir=voce_cache_dir, precision="int8"))
        assert isinstance(enc, OnnxEncoder)
        assert enc.graph == int8_graph_name(E5_SMALL_INT8_KEEP_FP32)
        assert "precision=int8" in enc.name
