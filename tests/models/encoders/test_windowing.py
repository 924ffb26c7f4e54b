"""Windowing, batching and pooling logic shared by the torch and ONNX backends (no model needed)."""
from __future__ import annotations

import numpy as np
import pytest

from voce.models.encoders.e5_convert import dequantize_q4_0
from voce.models.encoders.windowing import (
    SpecialTokens,
    encode_windows,
    encode_windows_with_spans,
    length_batches,
    masked_mean,
    plan_spans,
    plan_windows,
)

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


def _states_run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Token 'states' that make pooling checkable by hand: state = (token id, position, 1)."""
    pos = np.broadcast_to(np.arange(ids.shape[1]), ids.shape)
    return np.stack([ids, pos, np.ones_like(ids)], axis=-1).astype(np.float32) * mask[..., None]


def test_span_tokens_follow_their_last_character_and_the_prefix_is_the_frame() -> None:
    # "q: ab cd" with prefix "q: " (3 chars): pieces "▁q"(0,1) ":"(1,2) "▁ab"(2,5) "▁cd"(5,8)
    offsets = [[(0, 1), (1, 2), (2, 5), (5, 8)]]
    (plan,) = plan_spans(offsets, [[(0, 2), (3, 2), (2, 1)]], shift=3)
    assert plan.frame.tolist() == [0, 1]
    assert [m.tolist() for m in plan.members] == [[2], [3], [2]]  # the lone space borrows the token before it


def test_late_chunking_pools_the_same_positions_a_standalone_pass_would() -> None:
    content = [[7, 8, 10, 11, 12]]  # prefix pieces 7, 8; then a sentence (10, 11) and another (12)
    offsets = [[(0, 1), (1, 2), (3, 5), (5, 8), (8, 11)]]
    plans = plan_spans(offsets, [[(0, 5), (5, 3)]], shift=3)
    windows = plan_windows(content, XLMR, max_length=16)
    docs, spans = encode_windows_with_spans(windows, plans, 3, 8, _states_run, XLMR)
    whole = encode_windows(windows, 1, 3, 8, lambda i, m: masked_mean(_states_run(i, m), m), XLMR.pad)
    np.testing.assert_allclose(docs, whole, atol=1e-6)  # the text's own vector is unchanged
    # sentence 1 pools <s>, the prefix (7, 8), its tokens (10, 11) and </s> (2): ids 0, 7, 8, 10, 11, 2
    first = np.array([np.mean([0, 7, 8, 10, 11, 2]), np.mean([0, 1, 2, 3, 4, 6]), 1.0])
    np.testing.assert_allclose(spans[0][0], first / np.linalg.norm(first), atol=1e-6)
    second = np.array([np.mean([0, 7, 8, 12, 2]), np.mean([0, 1, 2, 5, 6]), 1.0])
    np.testing.assert_allclose(spans[0][1], second / np.linalg.norm(second), atol=1e-6)


def test_spans_of_a_long_text_are_pooled_across_its_windows() -> None:
    content = [[7, 10, 11, 12, 13, 14]]  # prefix 7; one span over 10..14 cut by 4-token windows
    offsets = [[(0, 2), (2, 4), (4, 6), (6, 8), (8, 10), (10, 12)]]
    plans = plan_spans(offsets, [[(0, 10)]], shift=2)
    windows = plan_windows(content, XLMR, max_length=5)  # 3 content tokens each: [7 10 11] [12 13 14]
    _, spans = encode_windows_with_spans(windows, plans, 3, 8, _states_run, XLMR)
    ids = [0, 7, 10, 11, 2] + [0, 12, 13, 14, 2]  # both windows' specials, the prefix, all five tokens
    pos = [0, 1, 2, 3, 4] + [0, 1, 2, 3, 4]
    expected = np.array([np.mean(ids), np.mean(pos), 1.0])
    np.testing.assert_allclose(spans[0][0], expected / np.linalg.norm(expected), atol=1e-6)


def test_long_windows_are_batched_few_at_a_time() -> None:
    lengths = [512] * 10 + [100] * 40
    batches = length_batches(lengths, batch_size=32)
    assert [len(b) for b in batches if lengths[b[0]] == 512] == [4, 4, 2]  # rows x 512^2 within the bound
    assert [len(b) for b in batches if lengths[b[0]] == 100] == [32, 8]  # short ones as before
    assert sorted(i for b in batches for i in b) == list(range(50))
