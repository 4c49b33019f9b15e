"""Word pooling: the unweighted mean of the frames whose 10 ms span overlaps a word's interval.

This is the convention of the CMU Multimodal SDK's word alignment (Zadeh et al., "Multimodal
Language Analysis in the Wild: CMU-MOSEI and Interpretable Dynamic Fusion Graph", ACL 2018),
which CM-BERT's features were made with. Frame k spans ``[k·hop, (k+1)·hop)`` (its centre is
``FRAME_OFFSET_S + k·hop``). A word ``[start_s, end_s]`` takes every frame with
``k·hop < end_s`` and ``(k+1)·hop > start_s``; a zero-length word takes the frame that contains
its instant. NaN and ±inf become 0 before and after averaging; a word with no frame (past the
end of the audio) gets zeros.

    >>> pooled = pool_words(frames, alignment.words)    # (T, D) -> (n_words, D)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cmbert_pipe.errors import FeatureError
from cmbert_pipe.schema import FRAME_HOP_S, WordInterval

_EPS = 1e-9  # s/hop: absorbs float error so that a boundary at exactly 30 ms is frame 3's start


def clean(frames: np.ndarray) -> np.ndarray:
    """(T, D) -> (T, D) float32 with NaN and ±inf replaced by 0."""
    return np.nan_to_num(np.asarray(frames, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def _as_bounds(intervals: Sequence[WordInterval] | np.ndarray) -> np.ndarray:
    """WordIntervals, (start_s, end_s) pairs or (word, start_s, end_s) triples -> (n, 2) float64."""
    if isinstance(intervals, np.ndarray):
        bounds = np.asarray(intervals, dtype=np.float64).reshape(-1, 2)
    else:
        rows = []
        for iv in intervals:
            if isinstance(iv, WordInterval):
                rows.append((iv.start_s, iv.end_s))
            else:
                rows.append((float(iv[-2]), float(iv[-1])))
        bounds = np.asarray(rows, dtype=np.float64).reshape(-1, 2)
    if not np.all(np.isfinite(bounds)):
        raise FeatureError("word interval with a non-finite time")
    bad = np.flatnonzero(bounds[:, 1] < bounds[:, 0])
    if bad.size:
        s, e = bounds[bad[0]]
        raise FeatureError(f"word interval {int(bad[0])} ends before it starts ({s} s > {e} s)")
    return bounds


def word_frame_ranges(
    intervals: Sequence[WordInterval] | np.ndarray, n_frames: int, hop_s: float = FRAME_HOP_S
) -> tuple[np.ndarray, np.ndarray]:
    """First and one-past-last frame index per word, clipped to ``[0, n_frames]``.

    Returns (lo, hi), each (n_words,) int64; ``hi <= lo`` means the word has no frame.
    """
    bounds = _as_bounds(intervals)  # (n, 2)
    start = bounds[:, 0] / hop_s
    end = bounds[:, 1] / hop_s
    lo = np.floor(start + _EPS).astype(np.int64)  # first k with (k+1)·hop > start
    hi = np.ceil(end - _EPS).astype(np.int64)  # one past the last k with k·hop < end
    hi = np.maximum(hi, lo + 1)  # zero-length word: the frame containing its instant
    lo = np.clip(lo, 0, n_frames)
    hi = np.clip(hi, 0, n_frames)
    return lo, hi


def pool_words(
    frames: np.ndarray,
    intervals: Sequence[WordInterval] | np.ndarray,
    hop_s: float = FRAME_HOP_S,
) -> np.ndarray:
    """Average (T, D) ``frames`` over each word's frames -> (n_words, D) float32.

    ``intervals``: :class:`~cmbert_pipe.schema.WordInterval` records, ``(start_s, end_s)``
    pairs, ``(word, start_s, end_s)`` triples or an (n, 2) array, in seconds.
    """
    frames = clean(frames)
    if frames.ndim != 2:
        raise FeatureError(f"frames must be (T, D), got shape {frames.shape}")
    n_frames, dim = frames.shape
    lo, hi = word_frame_ranges(intervals, n_frames, hop_s)
    # Prefix sums in float64: every word's sum is one subtraction, no Python loop.
    prefix = np.zeros((n_frames + 1, dim), dtype=np.float64)  # (T+1, D)
    np.cumsum(frames, axis=0, dtype=np.float64, out=prefix[1:])
    counts = np.maximum(hi - lo, 0)  # (n,)
    sums = prefix[np.maximum(hi, lo)] - prefix[lo]  # (n, D)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
    means[counts == 0] = 0.0
    return clean(means)


def words_without_frames(
    intervals: Sequence[WordInterval] | np.ndarray, n_frames: int, hop_s: float = FRAME_HOP_S
) -> np.ndarray:
    """(n_words,) bool: True for words that overlap no frame (they pool to zeros)."""
    lo, hi = word_frame_ranges(intervals, n_frames, hop_s)
    return hi <= lo
