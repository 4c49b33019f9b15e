"""End-to-end COVAREP-74 extraction against the reference CSVs, and the bad-input contract."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from cmbert_pipe.acoustic.covarep import COVAREP74_COLUMNS, COVAREP74_VERSION
from cmbert_pipe.acoustic.covarep.pipeline import SPECTRAL_COLUMNS, extract, extract_covarep74
from cmbert_pipe.errors import FeatureError

FILES = ["arctic_a0007", "ravdess_03-01-03-01-01-01-02"]
GLOTTAL = ("NAQ", "QOQ", "H1H2", "PSP", "MDQ", "peakSlope")


def _col(m, name):
    return m[:, COVAREP74_COLUMNS.index(name)].astype(float)


@pytest.fixture(scope="module", params=FILES)
def run(request, shared_data):
    folder = shared_data / "covarep-ref"
    x, fs = sf.read(folder / f"{request.param}.wav")
    ref = np.loadtxt(folder / f"{request.param}.csv", delimiter=",", skiprows=1)
    header = (folder / f"{request.param}.csv").read_text().splitlines()[0].split(",")
    return x, fs, extract(x, fs), ref, header


def test_shape_dtype_and_header(run):
    _, _, result, ref, header = run
    assert tuple(header) == COVAREP74_COLUMNS and len(COVAREP74_COLUMNS) == 74
    assert result.features.dtype == np.float32
    assert result.features.shape == ref.shape
    assert np.all(np.isfinite(result.features))
    assert isinstance(COVAREP74_VERSION, str) and COVAREP74_VERSION


def test_f0_vuv_fidelity_floor(run):
    _, _, result, ref, _ = run
    f0, f0_ref = _col(result.features, "F0"), _col(ref, "F0")
    assert np.corrcoef(f0, f0_ref)[0, 1] >= 0.999
    assert np.mean(_col(result.features, "VUV") == _col(ref, "VUV")) >= 0.99
    assert np.allclose(f0, f0_ref, rtol=1e-6)  # exact up to the float32 output


@pytest.mark.parametrize("name", GLOTTAL)
def test_glottal_fidelity_floor(run, name):
    _, _, result, ref, _ = run
    mine, theirs = _col(result.features, name), _col(ref, name)
    voiced = _col(ref, "VUV") > 0
    assert np.corrcoef(mine, theirs)[0, 1] >= 0.9
    assert np.corrcoef(mine[voiced], theirs[voiced])[0, 1] >= 0.9
    assert np.mean((mine == 0) == (theirs == 0)) >= 0.99  # zero masks: grid and edge logic
    assert np.median(np.abs(mine - theirs)) <= 1e-6 * max(1.0, np.median(np.abs(theirs)))


def test_spectral_columns_are_filled(run):
    _, _, result, _, _ = run
    for group, cols in SPECTRAL_COLUMNS.items():
        assert group not in result.missing
        block = np.stack([_col(result.features, c) for c in cols], axis=1)
        assert np.count_nonzero(block) > 0, group


# ----------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def clip(shared_data):
    """1.2 s of real speech (ARCTIC a0007, 0.8-2.0 s) at 16 kHz."""
    x, _ = sf.read(shared_data / "covarep-ref" / "arctic_a0007.wav")
    return x[12800:32000]


@pytest.fixture(scope="module")
def clip_frames(clip):
    return extract_covarep74(clip, 16000)


def test_clear_errors_for_unusable_input(clip):
    with pytest.raises(FeatureError, match="silence"):
        extract_covarep74(np.zeros(16000), 16000)
    bad = clip.copy()
    bad[100] = np.nan
    with pytest.raises(FeatureError, match="NaN"):
        extract_covarep74(bad, 16000)
    with pytest.raises(FeatureError, match="constant"):
        extract_covarep74(np.full(16000, 0.2), 16000)
    with pytest.raises(FeatureError, match="too short"):
        extract_covarep74(clip[:800], 16000)


def test_short_clip_gives_defined_output(clip):
    result = extract(clip[:8000], 16000)  # 0.5 s: below HMPD's ~0.82 s minimum
    f = result.features
    assert f.shape == ((8000 - 80) // 160 + 1, 74) and np.all(np.isfinite(f))
    assert "HMPD" in result.missing
    assert np.count_nonzero(_col(f, "F0")) > 0 and np.count_nonzero(_col(f, "NAQ")) > 0


def test_8khz_input_is_resampled(clip, clip_frames):
    low = scipy.signal.resample_poly(clip, 1, 2)
    f = extract_covarep74(low, 8000)
    assert abs(f.shape[0] - clip_frames.shape[0]) <= 1
    k = min(f.shape[0], clip_frames.shape[0])
    voiced = (_col(clip_frames, "VUV")[:k] > 0) & (_col(f, "VUV")[:k] > 0)
    assert voiced.sum() > 20
    f0_err = np.abs(_col(f, "F0")[:k] - _col(clip_frames, "F0")[:k])[voiced]
    assert np.median(f0_err) <= 2.0


def test_dc_offset_clipping_and_layout_are_handled(clip, clip_frames):
    voiced = _col(clip_frames, "VUV") > 0
    dc = extract_covarep74(clip + 0.3, 16000)
    assert np.median(np.abs(_col(dc, "F0") - _col(clip_frames, "F0"))[voiced]) <= 2.0
    clipped = extract_covarep74(np.clip(clip * 10, -0.5, 0.5), 16000)
    assert np.all(np.isfinite(clipped)) and np.count_nonzero(_col(clipped, "F0")) > 0
    stereo = extract_covarep74(np.stack([clip, 0.5 * clip[::-1]], axis=1), 16000)
    assert np.array_equal(stereo, clip_frames)  # first channel only


def test_integer_pcm_is_scaled_like_audioread(clip, clip_frames):
    pcm = np.round(clip * 32768).astype(np.int16)  # the WAV's own samples
    assert np.array_equal(extract_covarep74(pcm, 16000), clip_frames)


def test_block_wise_mcep_for_long_recordings_is_identical(clip, clip_frames, monkeypatch):
    from cmbert_pipe.acoustic.covarep import pipeline

    monkeypatch.setattr(pipeline, "MCEP_CHUNK_FRAMES", 30)  # force the long-file path
    assert np.array_equal(pipeline.extract_covarep74(clip, 16000), clip_frames)
