"""MATLAB-compat primitives of the COVAREP-74 port, each against an independent oracle."""

from __future__ import annotations

import random

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import scipy.signal

from cmbert_pipe.acoustic.covarep import mcompat as mc


def test_mround_is_half_away_from_zero():
    v = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 62.5, 1.4999])
    assert mc.mround(v).tolist() == [-3, -2, -1, 1, 2, 3, 63, 1]
    assert mc.iround(8000 / 128) == 63  # a tie that numpy's round sends to 62
    assert np.round(8000 / 128) == 62


def test_windows_match_scipy_definitions():
    n = 11
    assert np.allclose(mc.hanning_m(n), scipy.signal.windows.hann(n + 2)[1:-1])
    assert np.allclose(mc.hann_m(n), scipy.signal.windows.hann(n))
    assert np.allclose(mc.blackman_m(n), np.blackman(n))
    assert np.allclose(mc.hamming_m(n), np.hamming(n))
    assert mc.hanning_m(n).min() > 0  # no zero end points


@pytest.mark.parametrize("order", [1, 8, 18])
def test_lpc_matches_normal_equations(order):
    rng = np.random.default_rng(order)
    x = scipy.signal.lfilter([1.0], [1.0, -0.9, 0.4], rng.standard_normal(400)) * np.hanning(400)
    r = np.array([np.sum(x[k:] * x[: x.size - k]) for k in range(order + 1)])
    oracle = np.linalg.solve(scipy.linalg.toeplitz(r[:order]), -r[1:])
    assert np.allclose(mc.lpc_m(x, order)[1:], oracle, rtol=1e-9, atol=1e-12)
    assert np.allclose(mc.lpc_frame(x, order)[1:], oracle, rtol=1e-9, atol=1e-12)
    batch = mc.lpc_m(np.stack([x, 2 * x]), order)
    assert np.allclose(batch[0], batch[1])  # gain invariant, rows independent


def test_lpc_of_zero_frame_is_nan():
    assert np.all(np.isnan(mc.lpc_m(np.zeros(50), 4)[1:]))
    assert np.all(np.isnan(mc.lpc_frame(np.zeros(50), 4)[1:]))


def test_filtfilt_and_medfilt_match_scipy_definitions():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(300)
    b, a = scipy.signal.butter(3, 0.2)
    ref = scipy.signal.filtfilt(b, a, x, padtype="odd", padlen=9)
    assert np.allclose(mc.filtfilt_m(b, a, x), ref)
    m = mc.medfilt1_m(x, 5)
    padded = np.concatenate((np.zeros(2), x, np.zeros(2)))
    assert np.allclose(m, [np.median(padded[i : i + 5]) for i in range(x.size)])


def test_interp1_outside_is_default_and_matrix_columns():
    x = np.array([1.0, 2.0, 4.0])
    y = np.array([[0.0, 10.0], [1.0, 20.0], [3.0, 40.0]])
    q = np.array([0.5, 1.0, 3.0, 4.0, 4.5])
    out = mc.interp1_m(x, y, q)
    assert np.isnan(out[0]).all() and np.isnan(out[-1]).all()
    assert np.allclose(out[1:4, 0], np.interp(q[1:4], x, y[:, 0]))
    assert np.allclose(out[1:4, 1], np.interp(q[1:4], x, y[:, 1]))
    assert mc.interp1_m(x, y[:, 0], q, default=0.0)[0] == 0.0


def test_wrap_colon_linspace():
    p = np.array([0.1, np.pi + 0.2, -7.0])
    assert np.allclose(np.exp(1j * mc.wrap(p)), np.exp(1j * p))
    assert np.all(np.abs(mc.wrap(p)) <= np.pi)
    assert np.allclose(mc.colon(0, 0.005, 0.0123), [0, 0.005, 0.01])
    assert mc.linspace_m(1, 7, 4)[-1] == 7 and np.allclose(mc.linspace_m(1, 7, 4), [1, 3, 5, 7])


def test_findpeaks_matlab_agrees_with_scipy_without_plateaus_and_takes_first_plateau_sample():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(500)
    assert np.array_equal(mc.findpeaks_matlab(x), scipy.signal.find_peaks(x)[0])
    y = np.array([0, 1, 3, 3, 3, 1, 2, 2, 5, 0, 4])
    assert mc.findpeaks_matlab(y).tolist() == [2, 8]  # end points never peaks


def test_v_findpeaks_plateau_centres_quadratic_and_separation():
    y = np.array([0.0, 2.0, 2.0, 2.0, 2.0, 1.0, 3.0, 0.0, 5.0, 5.0, 5.0, 0.0])
    pos, _ = mc.v_findpeaks(y)
    assert pos.tolist() == [3.0, 7.0, 10.0]  # 1-based; even plateau -> lower centre
    # Quadratic refinement: a sampled parabola peaks exactly at its vertex.
    k = np.arange(20, dtype=float)
    par = -((k - 7.3) ** 2)
    pq, vq = mc.v_findpeaks(par, quadratic=True)
    assert np.allclose(pq, [8.3]) and np.allclose(vq, [0.0], atol=1e-12)
    # Minimum separation: of two close peaks the smaller goes.
    z = np.array([0, 3, 0, 5, 0, 0, 0, 0, 2, 0], dtype=float)
    ps, vs = mc.v_findpeaks(z, min_sep=2)
    assert ps.tolist() == [4.0, 9.0] and vs.tolist() == [5.0, 2.0]


def test_fminbnd_finds_minimum_like_scipy():
    for fun, lo, hi in ((lambda t: (t - 1.234) ** 2, 0.3, 2.5), (lambda t: np.cos(3 * t) + 0.1 * t, 0.3, 2.5)):
        x_oct, f_oct = mc.fminbnd_octave(fun, lo, hi, tol_x=1e-6)
        x_sp = scipy.optimize.fminbound(fun, lo, hi, xtol=1e-6)
        assert abs(x_oct - x_sp) < 1e-4
        assert f_oct == pytest.approx(fun(x_oct))


def test_octave_random_is_column_major_python_mt19937():
    m = mc.OctaveRandom(1).uniform(2, 3)
    ref = random.Random(1)
    draws = [ref.random() for _ in range(6)]
    assert np.allclose(m[:, 0], draws[:2]) and np.allclose(m[:, 2], draws[4:])


def test_grid_rows_and_midpoint_interpolation():
    from cmbert_pipe.acoustic.covarep.grid import n_rows, on_grid, output_grid, vuv_on_grid

    assert n_rows(16000) == (16000 - 80) // 160 + 1 == 100
    assert output_grid(16000)[:2].tolist() == [80.0, 240.0]
    centres = 800 + 160 * np.arange(6, dtype=float)  # SRH-like stream at m_j
    values = np.array([100.0, 110.0, 120.0, np.nan, 140.0, 150.0])
    col = on_grid(centres, values, 3000)
    assert col[:5].tolist() == [0.0] * 5  # before the first stamp
    assert col[5] == 105.0 and col[6] == 115.0  # mean of frames k-5 and k-4
    assert col[7] == 0.0 and col[8] == 0.0  # NaN neighbour -> 0
    assert np.all(col[n_rows(3000) - 1 :] >= 0)
    vuv = vuv_on_grid(centres, np.array([0, 1, 0, 0, 0, 0.0]), 3000)
    assert vuv[5] == 1 and vuv[6] == 1 and vuv[7] == 0  # voiced if either neighbour is
