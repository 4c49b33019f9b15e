"""Segmented COVAREP-74 (segments.py) gives the one-shot frames: real speech (the demo clips)
cut into tiny segments, with a pause longer than the margin (IAIF frames that span it need the
file's T0), read from an array and lazily from a 16 kHz file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cmbert_pipe.acoustic.covarep import COVAREP74_COLUMNS
from cmbert_pipe.acoustic.covarep.grid import GRID_HOP, n_rows
from cmbert_pipe.acoustic.covarep.pipeline import extract_covarep74
from cmbert_pipe.acoustic.covarep.segments import extract_covarep74_segmented, plan_segments
from cmbert_pipe.audio import load_audio
from cmbert_pipe.errors import AudioError, FeatureError

DEMO = Path(__file__).resolve().parents[2] / "assets" / "demo"
CORE_S, MARGIN_S = 1.5, 2.0  # tiny cores on purpose: 7 segments, boundaries inside speech
HMPD = [i for i, c in enumerate(COVAREP74_COLUMNS) if c.startswith("HMPD")]


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """~9 s: three demo sentences, 0.3 s and 2.5 s pauses between them, faint noise over all
    (the clips' own edges are digital silence, where COVAREP's HMPD is random fill and
    peakSlope is FFT rounding noise: see segments.py); 16 kHz float32 as load_audio gives."""
    rng = np.random.default_rng(0)
    parts = []
    for name, pause_s in (("pos02", 0.3), ("neg02", 2.5), ("neu02", 0.0)):
        parts.append(load_audio(DEMO / f"{name}.flac"))
        parts.append((1e-4 * rng.standard_normal(int(pause_s * 16000))).astype(np.float32))
    wave = np.concatenate(parts)
    return (wave + 1e-4 * rng.standard_normal(wave.size)).astype(np.float32)


@pytest.fixture(scope="module")
def one_shot(speech) -> np.ndarray:
    return extract_covarep74(speech, 16000)


def _assert_same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape and b.dtype == np.float32
    other = [i for i in range(a.shape[1]) if i not in HMPD]
    # every column but HMPD is bit-identical; HMPD's per-bin sums are blocked by segment size
    # (rounding in the last bits of float64, at most an ulp or so of the float32 output)
    np.testing.assert_array_equal(b[:, other], a[:, other])
    np.testing.assert_allclose(b[:, HMPD], a[:, HMPD], rtol=0, atol=1e-5)


def test_plan_covers_the_file_on_the_grid():
    n = 16000 * 7 + 123
    segs = plan_segments(n, CORE_S, MARGIN_S)
    assert segs[0].core_start == 0 and segs[-1].core_stop == n
    for a, b in zip(segs, segs[1:]):
        assert a.core_stop == b.core_start and a.core_stop % GRID_HOP == 0
    for s in segs:
        assert s.start % GRID_HOP == 0 and s.start <= s.core_start < s.core_stop <= s.stop <= n
        assert s.core_start - s.start in (s.core_start, 32000)  # margin, or the file start
    with pytest.raises(ValueError, match="margin"):
        plan_segments(n, CORE_S, 0.5)
    assert sum(n_rows(s.core_stop) - n_rows(s.core_start) for s in segs) == n_rows(n)


def test_tiny_segments_equal_one_shot(speech, one_shot):
    assert len(plan_segments(speech.size, CORE_S, MARGIN_S)) >= 6
    seg = extract_covarep74_segmented(speech, 16000, core_s=CORE_S, margin_s=MARGIN_S)
    _assert_same(one_shot, seg)
    # the comparison is not vacuous: glottal and spectral columns carry values in every part
    for name in ("F0", "NAQ", "MDQ", "Rd", "MCEP_3", "HMPDM_5", "HMPDD_2", "creak"):
        assert np.count_nonzero(one_shot[:, COVAREP74_COLUMNS.index(name)]) > 100


def test_file_decoded_segment_by_segment(speech, one_shot, tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, speech, 16000, subtype="FLOAT")
    _assert_same(one_shot, extract_covarep74_segmented(path, core_s=3.0, margin_s=MARGIN_S))


def test_bad_input_is_refused_with_a_reason(tmp_path):
    with pytest.raises(FeatureError, match="digital silence"):
        extract_covarep74_segmented(np.zeros(32000, np.float32), 16000)
    bad = np.ones(32000, np.float32)
    bad[100] = np.nan
    with pytest.raises(FeatureError, match="NaN"):
        extract_covarep74_segmented(bad, 16000)
    with pytest.raises(AudioError, match="not found"):
        extract_covarep74_segmented(tmp_path / "missing.wav")
