"""openSMILE feature sets on real speech, put on the 10 ms grid; registry behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from cmbert_pipe.acoustic import extract_frames, get_feature_set
from cmbert_pipe.acoustic.featuresets import grid_centres_s, n_grid_frames, to_grid
from cmbert_pipe.audio import load_audio
from cmbert_pipe.errors import ConfigError, FeatureError

RAVDESS_CLIP = "ravdess-dev/Actor_01/03-01-05-02-01-01-01.flac"  # angry, strong, "Kids are..."


@pytest.fixture(scope="module")
def ravdess_wave(shared_data):
    return load_audio(shared_data / RAVDESS_CLIP)


def _frame_rms(wave: np.ndarray, n_frames: int) -> np.ndarray:
    """(T,) RMS of a 25 ms window centred on each grid frame (5 ms + 10 ms·k)."""
    return np.array([np.sqrt(np.mean(wave[max(0, 160 * k - 80):160 * k + 240] ** 2))
                     for k in range(n_frames)])


@pytest.mark.parametrize("name, dim", [("egemaps", 25), ("compare", 65)])
def test_opensmile_sets_on_real_speech(ravdess_wave, name, dim):
    fs = get_feature_set(name)
    assert fs.dim == dim and len(set(fs.columns)) == dim
    frames = extract_frames(ravdess_wave, 16_000, name)  # (T, D)
    assert frames.shape == (len(ravdess_wave) // 160, dim)
    assert frames.dtype == np.float32 and np.all(np.isfinite(frames))
    varying = np.ptp(frames, axis=0) > 0
    assert varying.mean() > 0.9, f"constant columns: {np.array(fs.columns)[~varying]}"


def test_egemaps_loudness_follows_energy_at_zero_lag(ravdess_wave):
    """Loudness vs an independent numpy RMS: strongly correlated, and best aligned at lag 0,
    which checks that openSMILE rows were placed on the 5 ms + 10 ms·k grid correctly."""
    frames = extract_frames(ravdess_wave, 16_000, "egemaps")
    loud = frames[:, get_feature_set("egemaps").columns.index("Loudness_sma3")]
    rms = _frame_rms(ravdess_wave, len(loud))
    n = len(loud)
    r_by_lag = {lag: spearmanr(loud[max(0, lag):n + min(0, lag)],
                               rms[max(0, -lag):n - max(0, lag)])[0] for lag in range(-3, 4)}
    assert r_by_lag[0] > 0.9
    assert max(r_by_lag, key=r_by_lag.get) == 0


def test_telephone_rate_input_is_resampled(ravdess_wave):
    import soxr

    wave_8k = soxr.resample(ravdess_wave, 16_000, 8_000).astype(np.float32)
    wide = extract_frames(ravdess_wave, 16_000, "compare")
    narrow = extract_frames(wave_8k, 8_000, "compare")
    assert abs(narrow.shape[0] - wide.shape[0]) <= 1
    assert narrow.shape[1] == 65 and np.any(narrow)


def test_nan_samples_are_a_feature_error(ravdess_wave):
    bad = ravdess_wave.copy()
    bad[100] = np.nan
    with pytest.raises(FeatureError, match="NaN"):
        extract_frames(bad, 16_000, "egemaps")
    with pytest.raises(FeatureError, match="mono"):
        extract_frames(np.zeros((2, 1600), np.float32), 16_000, "egemaps")


def test_unknown_set_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown feature set 'mfcc'"):
        get_feature_set("mfcc")


def test_key_parts_name_version_and_params():
    eg, cp = get_feature_set("egemaps"), get_feature_set("compare")
    assert eg.key_part() != cp.key_part()
    assert eg.key_part()["params"]["config"] == "eGeMAPSv02"
    desc = eg.describe()
    assert desc["columns"] == list(eg.columns) and desc["dim"] == 25


def test_to_grid_interpolates_linearly_and_holds_edges():
    centres = np.array([0.01, 0.03, 0.05])  # s
    values = np.array([[1.0, 0.0], [3.0, np.nan], [5.0, 2.0]])  # (3, 2)
    got = to_grid(values, centres, 6)  # grid 5, 15, 25, 35, 45, 55 ms
    np.testing.assert_allclose(got[:, 0], [1.0, 1.5, 2.5, 3.5, 4.5, 5.0])
    np.testing.assert_allclose(got[:, 1], [0.0, 0.0, 0.0, 0.5, 1.5, 2.0])  # NaN -> 0
    np.testing.assert_allclose(grid_centres_s(3), [0.005, 0.015, 0.025])
    assert n_grid_frames(16_000) == 100 and n_grid_frames(10) == 1


@pytest.mark.parametrize("name", ["egemaps", "compare"])
def test_dc_offset_and_clipping_give_defined_frames(ravdess_wave, name):
    """A constant offset or hard clipping must still give finite frames of the same shape."""
    clean_frames = extract_frames(ravdess_wave, 16_000, name)
    peak = float(np.max(np.abs(ravdess_wave)))
    for distorted in (ravdess_wave + 0.3 * peak, np.clip(4.0 * ravdess_wave, -peak, peak)):
        frames = extract_frames(distorted.astype(np.float32), 16_000, name)
        assert frames.shape == clean_frames.shape
        assert np.all(np.isfinite(frames)) and np.any(frames)
