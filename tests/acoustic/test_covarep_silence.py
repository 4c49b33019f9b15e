"""COVAREP-74 on a real clip with inserted digital silence (docs/covarep74.md §16.1).

SRH gives F0 = 1 Hz on runs of exact zeros. Stage G keeps or drops those frames as the reference
does but gives them no harmonic partials (``sinusoidal.F0_FLOOR_HZ``, documented deviation), so
Rd is not searched over ~8000 harmonics there. The checks: every row finite, the grid row count,
the deviation itself (Rd rows of the silence are 0, the partial arrays stay narrow) and the
speech rows against the same clip without the silence, for the columns the spec makes local.

Columns that legitimately change file-wide and are not compared (spec references in brackets):
VUV (the voicing threshold depends on std(SRHVal) over the file, §4.8) and with it the
GCI-based NAQ/QOQ/H1H2/PSP/MDQ and creak; MCEP (time stamps linspace(1, L, M), §12.5);
HMPDM_24 and HMPDD (the random fill is drawn over N_frames x Hmax, §13 K2).
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from cmbert_pipe.acoustic.covarep import COVAREP74_COLUMNS
from cmbert_pipe.acoustic.covarep.grid import n_rows
from cmbert_pipe.acoustic.covarep.pipeline import extract
from cmbert_pipe.acoustic.covarep.sinusoidal import F0_FLOOR_HZ, harmonic_peak_picking

CLIP = "arctic_a0007"
INSERT_AT = 146 * 160  # sample index of the insertion (in a pause at ~1.46 s), on the row grid
SILENCE = 8000  # 0.5 s of exact zeros = 50 output rows
MARGIN_ROWS = 30  # rows either side of the silence that may differ (HMPD's 25-frame filter)
LOCAL_COLUMNS = ("F0", "peakSlope", "Rd", "Rd_conf") + tuple(f"HMPDM_{q}" for q in range(24))


def _col(name: str) -> int:
    return COVAREP74_COLUMNS.index(name)


@pytest.fixture(scope="module")
def clips(shared_data):
    x, fs = sf.read(shared_data / "covarep-ref" / f"{CLIP}.wav")
    assert fs == 16000
    y = np.concatenate([x[:INSERT_AT], np.zeros(SILENCE), x[INSERT_AT:]])
    return x, y, extract(x, fs).features.astype(float), extract(y, fs, keep_streams=True)


def test_rows_finite_and_grid_count(clips):
    _, y, _, result = clips
    assert result.features.shape == (n_rows(y.size), 74)
    assert np.all(np.isfinite(result.features))
    assert not result.missing


def test_silence_frames_have_no_partials(clips):
    _, y, _, result = clips
    f0 = result.streams["srh_f0"]
    low = f0 < F0_FLOOR_HZ
    assert low.sum() >= SILENCE // 160  # SRH's F0 = 1 Hz quirk on the silence
    frames = harmonic_peak_picking(y, 16000, result.streams["srh_time"] * 16000, f0)
    kept_low = frames.f0_hz < F0_FLOOR_HZ
    assert kept_low.any()  # the 48001-sample windows fit in this 3.5 s clip: frames kept (§9.3)
    assert np.all(frames.n_harm[kept_low] == 0)
    assert frames.freqs_hz.shape[1] <= 161  # Hmax from speech (f0 >= 50 Hz), not 8000
    assert np.all(np.isfinite(frames.spectrum[kept_low]))
    first, last = INSERT_AT // 160, INSERT_AT // 160 + SILENCE // 160
    feats = result.features
    assert np.all(feats[first + 5 : last, _col("F0")] == 1.0)  # reference quirk kept
    assert np.all(feats[first + 5 : last, _col("Rd")] == 0.0)  # deviation: no Rd below the floor
    assert np.all(feats[first + 5 : last, _col("Rd_conf")] == 0.0)


def test_speech_rows_unchanged_away_from_silence(clips):
    _, _, clean, result = clips
    k_ins, k_sil = INSERT_AT // 160, SILENCE // 160
    noisy = result.features.astype(float)
    shifted = np.concatenate([noisy[:k_ins], noisy[k_ins + k_sil :]])  # rows aligned with clean
    assert shifted.shape == clean.shape
    rows = np.abs(np.arange(clean.shape[0]) - k_ins) >= MARGIN_ROWS
    assert rows.sum() > 200
    for name in LOCAL_COLUMNS:
        a, b = shifted[rows, _col(name)], clean[rows, _col(name)]
        d = np.abs(a - b)
        if name.startswith("HMPDM"):
            d = np.abs((a - b + np.pi) % (2 * np.pi) - np.pi)
        if name.startswith("Rd"):  # §10: a rare frame may take another fminbnd path
            assert np.mean(d <= 1e-6) >= 0.99 and d.max() <= 0.01, name
        else:
            assert d.max() <= 1e-6, name
