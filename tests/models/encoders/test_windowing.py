"""Windowing, batching and pooling logic shared by the torch and ONNX backends (no model needed)."""
from __future__ import annotations

import numpy as np
import pytest

from voce.models.encoders.e5_convert import dequantize_q4_0
from voce.models.encoders.windowing import SpecialTokens, encode_windows, length_batches, masked_mean, plan_windows

XLMR = SpecialTokens(head=(0,), tail=(2,), pad=1)


def test_special_tokens_are_read_off_the_template() -> None:
    assert SpecialTokens.from_template([0, 7, 8, 2], [7, 8], pad=1) == XLMR
    assert SpecialTokens.from_template([7, 8], [7, 8], pad=None) == SpecialTokens((), (), 0)
    with pytest.raises(ValueError):
        SpecialTokens.from_template([0, 7, 9, 2], [7, 8], pad=1)


def test_long_texts_become_consecutive_windows() -> None:
    windows = plan_windows([list(range(10, 17)), [], [5]], XLMR, max_length=5)
    assert [(w.text, w.ids, w.weight) for w in windows] == [
        (0, (0, 10, 11, 12, 2), 3),
        (0, (0, 13, 14, 15, 2), 3),
        (0, (0, 16, 2), 1),
        (1, (0, 2), 1),
        (2, (0, 5, 2), 1),
    ]
    with pytest.raises(ValueError):
        plan_windows([[1]], XLMR, max_length=2)


def test_windows_are_combined_by_content_weight_and_order_is_restored() -> None:
    windows = plan_windows([[3] * 4, [4] * 9, [5]], XLMR, max_length=6)  # text 1 -> windows of 4, 4, 1

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        # a "model" whose mean-pool is one-hot on the window's first content id, scaled by its length
        out = np.zeros((len(ids), 8))
        for row in range(len(ids)):
            out[row, ids[row, 1]] = mask[row].sum()
        return out

    for batch_size in (1, 2, 32):
        out = encode_windows(windows, 3, 8, batch_size, run, pad=XLMR.pad)
        assert out.shape == (3, 8) and out.dtype == np.float32
        assert np.allclose(np.linalg.norm(out, axis=1), 1.0)
        assert out[0].argmax() == 3 and out[1].argmax() == 4 and out[2].argmax() == 5


def test_batches_are_length_sorted_and_bounded() -> None:
    lengths = [10, 512, 12, 300, 11, 9]
    assert length_batches(lengths, batch_size=32) == [[1, 3], [2, 4, 0, 5]]
    assert length_batches(lengths, batch_size=2) == [[1, 3], [2, 4], [0, 5]]
    assert length_batches(lengths, batch_size=32, max_tokens=512) == [[1], [3], [2, 4, 0, 5]]
    assert length_batches([], batch_size=4) == []
    with pytest.raises(ValueError):
        length_batches(lengths, batch_size=0)


def test_masked_mean_ignores_padding() -> None:
    hidden = np.arange(12, dtype=np.float32).reshape(1, 4, 3)
    mask = np.array([[1, 1, 0, 0]])
    assert np.allclose(masked_mean(hidden, mask), [[1.5, 2.5, 3.5]])


def test_q4_0_dequantisation_matches_e5c_layout() -> None:
    # one block: scale 0.5; byte j = (low nibble j, high nibble 15 - j)
    scale = np.array([0.5], dtype="<f2").view(np.uint8)
    nibbles = np.array([(j & 0x0F) | ((15 - j) << 4) for j in range(16)], dtype=np.uint8)
    raw = np.concatenate([scale, nibbles])
    out = dequantize_q4_0(raw, 1, 32)
    expected = [(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)]
    assert np.array_equal(out[0], np.array(expected, dtype=np.float32))
