"""Acoustic features: frame-level extraction on a 10 ms grid and per-word pooling.

    >>> from cmbert_pipe.acoustic import extract_frames, pool_words
    >>> frames = extract_frames(wave, 16_000)                    # (T, 74) float32, COVAREP order
    >>> frames = extract_frames(wave, 8_000, feature_set="egemaps")  # (T, 25), resampled first
    >>> word_vectors = pool_words(frames, alignment.words)       # (n_words, 74)

Frame k is centred at 5 ms + 10 ms·k (:data:`~cmbert_pipe.schema.FRAME_OFFSET_S`,
:data:`~cmbert_pipe.schema.FRAME_HOP_S`); NaN and ±inf become 0. The feature sets are listed in
:mod:`cmbert_pipe.acoustic.featuresets`.
"""

from __future__ import annotations

import numpy as np

from cmbert_pipe.acoustic.featuresets import (
    DEFAULT_FEATURE_SET,
    FEATURE_SET_NAMES,
    FeatureSet,
    get_feature_set,
)
from cmbert_pipe.acoustic.pooling import clean, pool_words, words_without_frames
from cmbert_pipe.audio import resample
from cmbert_pipe.errors import FeatureError
from cmbert_pipe.schema import SAMPLE_RATE


def extract_frames(
    waveform: np.ndarray, sr: int = SAMPLE_RATE, feature_set: str = DEFAULT_FEATURE_SET
) -> np.ndarray:
    """Frame features of a mono waveform -> (T, D) float32, NaN/±inf set to 0.

    ``waveform``: (N,) samples at ``sr`` Hz (resampled to 16 kHz when ``sr`` differs).
    Raises :class:`FeatureError` for non-mono, empty or non-finite input.
    """
    wave = np.asarray(waveform, dtype=np.float32)
    if wave.ndim != 1:
        raise FeatureError(f"waveform must be mono (N,), got shape {wave.shape}")
    if wave.size == 0:
        raise FeatureError("waveform is empty")
    if not np.all(np.isfinite(wave)):
        bad = int(wave.size - np.count_nonzero(np.isfinite(wave)))
        raise FeatureError(f"waveform contains {bad} NaN/inf samples")
    wave = resample(wave, int(sr), SAMPLE_RATE)
    fs = get_feature_set(feature_set)
    frames = np.asarray(fs.extract(wave))
    if frames.ndim != 2 or frames.shape[1] != fs.dim:
        raise FeatureError(
            f"{fs.name} returned shape {frames.shape}, expected (T, {fs.dim})"
        )
    return clean(frames)


__all__ = [
    "DEFAULT_FEATURE_SET",
    "FEATURE_SET_NAMES",
    "FeatureSet",
    "extract_frames",
    "get_feature_set",
    "pool_words",
    "words_without_frames",
]
