"""Word pooling against an independent per-frame oracle, and its edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from cmbert_pipe.acoustic import pool_words, words_without_frames
from cmbert_pipe.errors import FeatureError
from cmbert_pipe.schema import FRAME_HOP_S, WordInterval


def oracle(frames: np.ndarray, intervals: list[tuple[float, float]]) -> np.ndarray:
    """Loop over every frame: take it if its [k·hop, (k+1)·hop) span overlaps the word."""
    frames = np.where(np.isfinite(frames), frames, 0.0)
    out = np.zeros((len(intervals), frames.shape[1]))
    for i, (s, e) in enumerate(intervals):
        taken = [
            frames[k]
            for k in range(frames.shape[0])
            if k * FRAME_HOP_S < e and (k + 1) * FRAME_HOP_S > s
        ]
        if taken:
            out[i] = np.mean(taken, axis=0)
    return out


def test_matches_oracle_on_random_words():
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(537, 74)).astype(np.float32)  # (T, 74), 5.37 s
    # Boundaries off the 10 ms grid (the oracle's float comparisons are then unambiguous).
    starts = np.sort(rng.uniform(0.0, 5.6, size=60)) + 0.0013
    ends = starts + rng.uniform(0.004, 0.8, size=60)
    intervals = list(zip(starts.tolist(), ends.tolist()))
    got = pool_words(frames, intervals)
    assert got.shape == (60, 74) and got.dtype == np.float32
    np.testing.assert_allclose(got, oracle(frames, intervals), rtol=1e-5, atol=1e-5)


def test_word_records_and_triples_are_accepted():
    frames = np.arange(50, dtype=np.float32).reshape(50, 1)  # frame k holds k
    words = [WordInterval("a", 0.0, 0.05), WordInterval("b", 0.05, 0.1)]
    triples = [("a", 0.0, 0.05), ("b", 0.05, 0.1)]
    np.testing.assert_allclose(pool_words(frames, words), [[2.0], [7.0]])
    np.testing.assert_allclose(pool_words(frames, triples), [[2.0], [7.0]])


def test_grid_boundaries_are_exclusive():
    frames = np.arange(10, dtype=np.float32).reshape(10, 1)
    # [0.03, 0.05] touches frame 2's end and frame 5's start: only frames 3 and 4 overlap.
    np.testing.assert_allclose(pool_words(frames, [(0.03, 0.05)]), [[3.5]])


def test_word_shorter_than_one_frame_takes_its_frame():
    frames = np.arange(10, dtype=np.float32).reshape(10, 1)
    np.testing.assert_allclose(pool_words(frames, [(0.0412, 0.0431)]), [[4.0]])
    np.testing.assert_allclose(pool_words(frames, [(0.046, 0.053)]), [[4.5]])  # straddles
    np.testing.assert_allclose(pool_words(frames, [(0.07, 0.07)]), [[7.0]])  # zero length


def test_word_past_the_end_gets_zeros_and_partial_word_is_clipped():
    frames = np.ones((10, 3), dtype=np.float32)  # 0.1 s of audio
    got = pool_words(frames, [(0.05, 0.3), (0.2, 0.4), (0.1, 0.1)])
    np.testing.assert_allclose(got, [[1, 1, 1], [0, 0, 0], [0, 0, 0]])
    assert words_without_frames([(0.05, 0.3), (0.2, 0.4)], 10).tolist() == [False, True]


def test_negative_start_is_clipped():
    frames = np.arange(10, dtype=np.float32).reshape(10, 1)
    np.testing.assert_allclose(pool_words(frames, [(-0.5, 0.02)]), [[0.5]])


def test_nan_and_inf_become_zero():
    frames = np.array([[1.0, np.nan], [np.inf, 2.0], [3.0, -np.inf]], dtype=np.float32)
    got = pool_words(frames, [(0.0, 0.03)])
    np.testing.assert_allclose(got, [[4.0 / 3.0, 2.0 / 3.0]], rtol=1e-6)
    assert np.all(np.isfinite(got))


def test_empty_intervals_and_empty_frames():
    assert pool_words(np.ones((5, 4)), []).shape == (0, 4)
    np.testing.assert_array_equal(pool_words(np.zeros((0, 4)), [(0.0, 0.1)]), np.zeros((1, 4)))


def test_reversed_interval_is_an_error():
    with pytest.raises(FeatureError, match="ends before it starts"):
        pool_words(np.ones((5, 2)), [(0.04, 0.01)])
