"""Lexical n-gram features and the hybrid heads that read them next to the embedding."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from voce.models.bundle import LEXICAL_FILENAME, SENTIMENT_LABELS, BundleError, VoceBundle, default_bundle_path
from voce.models.heads import LinearHead, ZeroShotCalibration
from voce.models.lexical import LexicalFeaturizer, LexicalSpec
from voce.training.train import fit_binary_head, fit_softmax_head

TEXTS = [
    "Il wifi non funzionava in camera.",
    "La colazione era abbondante e buona.",
    "Wifi lentissimo, impossibile lavorare.",
    "Colazione scarsa, pochi dolci.",
    "The wifi kept dropping all night.",
    "Breakfast was great, lots of choice.",
]
WIFI = np.array([1, 0, 1, 0, 1, 0])


def _featurizer(**kw: int) -> LexicalFeaturizer:
    return LexicalFeaturizer.fit(TEXTS, LexicalSpec(min_df=1, **kw))


def test_features_are_sparse_and_l2_normalised_per_block() -> None:
    lex = _featurizer(word_features=50, char_features=200)
    m = lex.transform(TEXTS + ["tutto nuovo qui"])
    assert m.shape == (7, lex.dim) and m.dtype == np.float32
    word = m[:, : len(lex.word_terms)].toarray()
    char = m[:, len(lex.word_terms) :].toarray()
    assert np.allclose(np.linalg.norm(word[:6], axis=1), 1.0, atol=1e-5)
    assert np.allclose(np.linalg.norm(char, axis=1), 1.0, atol=1e-5)
    assert "wifi" in lex.word_terms and len(lex.char_terms) == 200


def test_vocabulary_caps_and_empty_blocks() -> None:
    assert _featurizer(word_features=5, char_features=0).dim == 5
    empty = _featurizer(word_features=0, char_features=0)
    assert empty.transform(["x"]).shape == (1, 0)


def test_corpus_without_frequent_ngrams_gives_empty_blocks() -> None:
    lex = LexicalFeaturizer.fit(["a", "b"], LexicalSpec(min_df=2))
    assert lex.dim == 0 and lex.transform(["a"]).shape == (1, 0)


def test_misspelled_word_shares_character_ngrams() -> None:
    lex = _featurizer(word_features=0, char_features=500)
    a, b, c = lex.transform(["colazione", "colazone", "parcheggio"]).toarray()
    assert a @ b > 0.5 > a @ c


def test_hybrid_binary_head_overfits_on_the_words_alone() -> None:
    """With an uninformative embedding, the n-gram block must carry the label."""
    lex = _featurizer(word_features=100, char_features=300)
    x = np.ones((len(TEXTS), 4), np.float32) / 2
    m = lex.transform(TEXTS)
    head = fit_binary_head(x, WIFI, C=1e3, seed=0, x_cal=x[:0], y_cal=np.array([]), label="connectivity", lex=m)
    assert head.registered_name == "HybridSigmoid.v1" and head.lexical_dim == lex.dim
    p = head.predict_proba(x, m)[:, 0]
    assert (p[WIFI == 1] > 0.8).all() and (p[WIFI == 0] < 0.2).all()
    new = lex.transform(["il wifi era lento", "colazione ottima"])
    q = head.predict_proba(x[:2], new)[:, 0]
    assert q[0] > 0.5 > q[1]
    with pytest.raises(ValueError, match="lexical features"):
        head.predict_proba(x)


def test_hybrid_softmax_head_batch_equals_single_and_stores_float16_weights() -> None:
    lex = _featurizer(word_features=100, char_features=300)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4)).astype(np.float32)
    m = lex.transform(TEXTS)
    y = ["negative", "positive", "negative", "negative", "negative", "positive"]
    head = fit_softmax_head(x, y, SENTIMENT_LABELS, C=10.0, seed=0, x_cal=x[:0], y_cal=[], lex=m)
    assert head.registered_name == "HybridSoftmax.v1"
    assert head.lex_weight is not None
    # fitted weights are already float16-exact, so storing them in float16 changes nothing
    assert np.array_equal(head.lex_weight, head.lex_weight.astype(np.float16).astype(np.float32))
    assert head.tensors("h")["h.lex_weight"].dtype == np.float16
    batch = head.predict_proba(x, m)
    single = np.vstack([head.predict_proba(x[i : i + 1], m[i : i + 1]) for i in range(6)])
    assert np.allclose(batch, single, atol=1e-6) and np.allclose(batch.sum(axis=1), 1.0, atol=1e-5)


def _hybrid_bundle(lex: LexicalFeaturizer, dim: int = 4) -> VoceBundle:
    rng = np.random.default_rng(7)

    def head(kind: str, labels: list[str], hybrid: bool) -> LinearHead:
        w_lex = rng.normal(size=(len(labels), lex.dim)).astype(np.float16).astype(np.float32) if hybrid else None
        return LinearHead(kind, labels, rng.normal(size=(len(labels), dim)), rng.normal(size=len(labels)),  # type: ignore[arg-type]
                          lex_weight=w_lex)

    return VoceBundle(
        encoder={"name": "fake", "dim": dim, "backend": "fake", "model": "fake"},
        sentiment=head("softmax", SENTIMENT_LABELS, False),
        topics=head("sigmoid", ["connectivity", "product_quality"], True),
        topic_polarity={"connectivity": head("softmax", SENTIMENT_LABELS, True)},
        detractor=head("sigmoid", ["detractor"], False),
        zero_shot=ZeroShotCalibration(),
        center=np.zeros(dim, np.float32),
        lexical=lex,
    )


def test_hybrid_bundle_save_load_gives_identical_features_and_predictions(tmp_path: Path) -> None:
    lex = _featurizer(word_features=100, char_features=300)
    b = _hybrid_bundle(lex)
    b.save(tmp_path / "b")
    c = VoceBundle.load(tmp_path / "b")
    assert c.lexical is not None and c.manifest()["heads"]["topics"]["type"] == "HybridSigmoid.v1"
    probe = ["wifi assente in camera", "colazione ottima", "nothing in common"]
    f_b, f_c = b.lexical_features(probe), c.lexical_features(probe)
    assert (f_b != f_c).nnz == 0
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    for name, head in b.heads().items():
        assert np.array_equal(head.predict_proba(x, f_b), c.heads()[name].predict_proba(x, f_c)), name


def test_hybrid_bundle_refuses_missing_or_mismatched_vocabulary(tmp_path: Path) -> None:
    lex = _featurizer(word_features=100, char_features=300)
    _hybrid_bundle(lex).save(tmp_path / "b")
    vocab = tmp_path / "b" / LEXICAL_FILENAME
    terms = json.loads(vocab.read_text("utf-8"))
    terms["word"][0] = "tampered"
    vocab.write_text(json.dumps(terms), "utf-8")
    with pytest.raises(BundleError, match="lexical.json"):
        VoceBundle.load(tmp_path / "b")
    vocab.unlink()
    with pytest.raises(BundleError, match="lexical.json"):
        VoceBundle.load(tmp_path / "b")
    smaller = _featurizer(word_features=10, char_features=10)
    with pytest.raises(BundleError, match="lexical features"):
        VoceBundle(**{**_hybrid_bundle(lex).__dict__, "lexical": smaller})


def test_fast_transform_equals_sklearns_transform_bit_for_bit() -> None:
    """``transform`` skips sklearn's per-call validation; the features must be exactly what sklearn computes."""
    bundle = VoceBundle.load(default_bundle_path())
    lex = bundle.lexical
    assert lex is not None
    texts = [*TEXTS, "", "ok", "👍👍 grazie 🙏", "NON FUNZIONA NIENTE!!!", "servizo pesimo, nn torno piu",
             "La bolletta di marzo è sbagliata: mi hanno addebitato due volte il canone (€ 12,50).",
             "colazione " * 200, "x"]
    for block in (lex._word, lex._char):
        assert block is not None
        for batch in (texts, texts[:1], texts[7:9]):
            ours, theirs = lex._tfidf(block, batch), block.transform(batch)
            assert ours.dtype == theirs.dtype == np.float32
            assert (ours != theirs).nnz == 0 and ours.shape == theirs.shape
