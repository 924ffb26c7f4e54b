"""Themes fitted on a sample, applied to the rest (models/discovery.py: fit_topic_assigner, LanguageCentering)."""
from __future__ import annotations

import numpy as np

from voce.models.discovery import center_by_language, fit_language_centering, fit_topic_assigner


def _blobs(rng: np.random.Generator, centres: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, len(centres), size=n)
    vecs = centres[labels] + 0.05 * rng.standard_normal((n, centres.shape[1]))
    return (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32), labels


def test_centering_fitted_once_is_center_by_language() -> None:
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((120, 16)).astype(np.float32)
    langs = ["it"] * 60 + ["en"] * 55 + ["und"] * 5
    for components in (0, 2):
        fitted = fit_language_centering(vecs, langs, components=components)
        np.testing.assert_allclose(fitted.apply(vecs, langs), center_by_language(vecs, langs, components=components),
                                   atol=1e-6)


def test_new_comments_join_their_theme_and_strangers_stay_out() -> None:
    rng = np.random.default_rng(1)
    centres = np.eye(3, 32, dtype=np.float32) * 3 + 0.1
    sample, labels = _blobs(rng, centres, 90)
    langs = ["it" if i % 2 else "en" for i in range(90)]
    assigner = fit_topic_assigner(sample, langs, labels.tolist())
    rest, truth = _blobs(rng, centres, 200)
    got = assigner.assign(rest, ["it" if i % 3 else "en" for i in range(200)])
    # the floor is the sample's 5th percentile of member similarity: about that share of typical newcomers stays
    # out, every one that joins a theme joins its own
    assert (got >= 0).mean() > 0.85 and (got[got >= 0] == truth[got >= 0]).all()
    stranger = np.zeros((1, 32), np.float32)
    stranger[0, 20] = 1.0  # like none of the themes
    assert assigner.assign(stranger, ["it"]).tolist() == [-1]
    assert assigner.assign(np.zeros((0, 32), np.float32), []).shape == (0,)


def test_no_theme_on_the_sample_assigns_nothing() -> None:
    rng = np.random.default_rng(2)
    sample = rng.standard_normal((30, 8)).astype(np.float32)
    assigner = fit_topic_assigner(sample, ["it"] * 30, [-1] * 30)
    assert assigner.assign(sample[:5], ["it"] * 5).tolist() == [-1] * 5
