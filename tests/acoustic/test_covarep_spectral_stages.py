"""COVAREP-74 spectral stages against the original COVAREP (Octave) reference intermediates and CSVs in
../shared/data/covarep-ref (docs/covarep74.md §15): sinusoidal frames -> Rd/Rd_conf, MCEP, HMPD.

Inputs (SRH frames, polarity) are taken from the .mat so these tests do not depend on the source stages (polarity, SRH, GCI, IAIF).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import soundfile as sf

from cmbert_pipe.acoustic.covarep.envelope import mcep_abscissa, mcep_frames
from cmbert_pipe.acoustic.covarep.hmpd import hmpd_features, hmpd_to_grid
from cmbert_pipe.acoustic.covarep.mcompat import mround, wrap
from cmbert_pipe.acoustic.covarep.rd import rd_msp
from cmbert_pipe.acoustic.covarep.sinusoidal import harmonic_peak_picking

FILES = ["arctic_a0007", "ravdess_03-01-05-01-01-01-12", "tts_a"]
HMPD_EDGE_ROWS = 18  # 5 ms rows (= 9 analysis frames) at each end where HMPDD is ill-conditioned


class Octave:
    """The Octave-compatible generator of docs/covarep74.md §2.6 (kept local: no source-stage import)."""

    def __init__(self, seed=1):
        import random

        self._rng = random.Random(seed)

    def uniform(self, rows, cols):
        draws = np.array([self._rng.random() for _ in range(rows * cols)])
        return draws.reshape(cols, rows).T


class PartB:
    def __init__(self, folder, name):
        x, self.fs = sf.read(folder / f"{name}.wav", dtype="float64")
        self.ref = scipy.io.loadmat(folder / f"{name}_intermediate.mat")
        self.csv = np.loadtxt(folder / f"{name}.csv", delimiter=",", skiprows=1)
        self.x = self.ref["polarity"].item() * x
        centres = mround(self.ref["srh_time"].ravel() * self.fs)
        self.frames = harmonic_peak_picking(self.x, self.fs, centres, self.ref["srh_f0"].ravel())


@pytest.fixture(scope="module", params=FILES)
def b(request, shared_data):
    return PartB(shared_data / "covarep-ref", request.param)


def test_frames_match_reference_times(b):
    np.testing.assert_array_equal(b.frames.t_s, b.ref["frames_t"].ravel())
    np.testing.assert_array_equal(b.frames.f0_hz, b.ref["frames_f0"].ravel())


def test_mcep_matches_reference(b):
    mc = mcep_frames(b.frames, b.fs)
    assert np.abs(mc - b.ref["MCEP_frames"]).max() <= 1e-10
    # on the 10 ms grid (MCEP has no zero rows); the CSV carries ~9 significant digits
    k = b.csv.shape[0]
    grid = (80 + 160 * np.arange(k)).astype(float)
    absc = mcep_abscissa(mc.shape[0], b.x.size)
    on_grid = np.column_stack([np.interp(grid, absc, mc[:, q]) for q in range(25)])
    np.testing.assert_allclose(on_grid, b.csv[:, 11:36], rtol=1e-7, atol=1e-8)


def test_rd_matches_reference_within_spec(b):
    rds = rd_msp(b.frames, b.fs)
    ref = b.ref["rds"]
    np.testing.assert_array_equal(rds[:, 0], ref[:, 0])
    d_rd = np.abs(rds[:, 1] - ref[:, 1])
    d_conf = np.abs(rds[:, 2] - ref[:, 2])
    assert np.mean(d_rd <= 1e-9) >= 0.99 and np.mean(d_conf <= 1e-9) >= 0.99
    # spec: the rest within 0.01 (Rd) / 1e-4 (Rd_conf). Measured over all 17 reference files:
    # 0.38 % of 10126 frames differ, 2 of them by more than 0.01 (Brent's search ends in another
    # local minimum: Rd off by 0.28 and 0.13, Rd_conf by 2.0e-2 and 1.2e-3, on
    # mfa_acoustic_corpus and ravdess_03-01-05-01-01-01-12)
    assert np.sum(d_rd > 0.01) <= 1 and np.sum(d_conf > 1e-4) <= 1
    assert d_conf.max() <= 5e-3


def test_hmpd_matches_reference(b):
    u, pdm, pdd = hmpd_features(b.frames, b.fs, Octave(1))
    np.testing.assert_allclose(u, b.ref["hmpdf0s"][:, 0], rtol=0, atol=1e-12)
    assert np.abs(wrap(pdm - b.ref["HMPDM_raw"])).max() <= 1e-9  # HMPDM_0..24 with Octave RNG
    interior = np.abs(pdd - b.ref["HMPDD_raw"])[HMPD_EDGE_ROWS:-HMPD_EDGE_ROWS].max(axis=1)
    # spec: <= 1e-8 on interior rows; a few interior rows hit the same z = 1 +- ulp instability
    # as the edges (measured: 1-14 rows per file up to 5e-6)
    assert np.mean(interior <= 1e-8) >= 0.98 and interior.max() <= 1e-5
    assert np.all(np.isfinite(pdd))
    pdm_g, pdd_g = hmpd_to_grid(u, pdm, pdd, b.x.size, b.fs)
    assert np.array_equal(pdm_g == 0, b.csv[:, 36:61] == 0)  # zero masks agree (grid/edge logic)
    assert np.array_equal(pdd_g == 0, b.csv[:, 61:74] == 0)
    assert np.abs(wrap(pdm_g - b.csv[:, 36:61])).max() <= 1e-8  # CSV precision


def test_hmpd_without_octave_rng_changes_only_the_top_band(b):
    _, pdm, _ = hmpd_features(b.frames, b.fs, None)
    err = np.abs(wrap(pdm - b.ref["HMPDM_raw"]))
    assert err[:, :24].max() <= 1e-9
    assert 0 < np.median(err[:, 24]) < 0.1


def test_hmpd_needs_more_than_72_frames(b):
    import dataclasses

    short = dataclasses.replace(
        b.frames, **{f.name: getattr(b.frames, f.name)[:72] for f in dataclasses.fields(b.frames)}
    )
    with pytest.raises(ValueError, match="more than 72"):
        hmpd_features(short, b.fs, Octave(1))
