"""The fast forms of COVAREP-74 kernels against the straightforward forms they replace.

Each compiled (numba) or table-based kernel is checked on real data or on random inputs built to
hit its edge cases (plateaus, ties, zeros, short inputs); the straightforward forms are the ones
the reference comparison tests were first written against.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from scipy.ndimage import median_filter

from cmbert_pipe.acoustic.covarep import envelope, rd, voicequality
from cmbert_pipe.acoustic.covarep.hmpd import _median9_cols
from cmbert_pipe.acoustic.covarep.mcompat import OctaveRandom, _peak_runs, v_findpeaks


def _v_findpeaks_numpy(x, min_sep):
    """VOICEBOX v_findpeaks (no quadratic refinement) written with numpy, as before."""
    starts, ends = _peak_runs(x)
    k = starts + (ends - starts) // 2
    v, pos = x[k].copy(), k + 1.0
    while min_sep and pos.size > 1:
        close = np.flatnonzero(np.diff(pos) <= min_sep)
        if close.size == 0:
            break
        drop = np.where(v[close] >= v[close + 1], close + 1, close)
        keep = np.ones(pos.size, bool)
        keep[drop] = False
        pos, v = pos[keep], v[keep]
    return pos, v


def test_compiled_v_findpeaks_equals_the_numpy_form():
    rng = np.random.default_rng(0)
    for t in range(2000):
        n = int(rng.integers(0, 80))
        x = np.round(rng.normal(size=n) * (1 + t % 3))  # many plateaus and ties
        if t % 2:
            x = np.repeat(x, rng.integers(1, 4, size=n))
        min_sep = (None, 0.5, 2.0, 3.7)[t % 4]
        pos, val = v_findpeaks(x, False, min_sep)
        ref_pos, ref_val = _v_findpeaks_numpy(x.astype(float), min_sep)
        np.testing.assert_array_equal(pos, ref_pos)
        np.testing.assert_array_equal(val, ref_val)


@pytest.mark.parametrize("n", [1, 4, 9, 10, 200])
def test_sliding_median_equals_scipy(n):
    rng = np.random.default_rng(n)
    x = np.cos(rng.uniform(0, 6, size=(n, 40)))
    x[:, 3] = np.round(x[:, 3])  # ties with the zero padding
    x[:, 4] = 0.0
    x[::3, 5] = 1.0
    np.testing.assert_array_equal(
        _median9_cols(x), median_filter(x, size=(9, 1), mode="constant", cval=0.0)
    )


def test_octave_random_stream_is_python_mt19937():
    o, r = OctaveRandom(1), random.Random(1)
    got = np.concatenate([o.uniform(7, 3).T.ravel(), o.uniform(500, 1).ravel()])
    np.testing.assert_array_equal(got, [r.random() for _ in range(521)])


def test_true_envelope_tables_equal_the_fft_form():
    rng = np.random.default_rng(3)
    dftlen = 4096
    # log spectra of harmonic combs at several f0 (orders 8000 / f0, scaled by 1.2 inside)
    f0 = rng.uniform(60, 400, size=24)
    k = np.arange(dftlen // 2 + 1) * 16000 / dftlen
    spec = np.exp(-(((k[None, :] % f0[:, None]) / 20.0) ** 2)) + 1e-3 * rng.random((24, k.size))
    orders = np.round(0.5 * 16000 / f0)
    fast = envelope.true_envelope_log(spec, orders, dftlen)
    saved = envelope.TE_TABLE_ORDERS
    try:
        envelope.TE_TABLE_ORDERS = 0  # every frame through the DCT / FFT form
        slow = envelope.true_envelope_log(spec, orders, dftlen)
    finally:
        envelope.TE_TABLE_ORDERS = saved
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-9)


def test_compiled_msp_criterion_equals_the_numpy_form():
    rng = np.random.default_rng(5)
    n, hp_max = 40, 60
    hp = rng.integers(5, hp_max, size=n)
    width = hp_max + 1
    cols = np.arange(width)[None, :]
    m_logabs = np.where(cols <= hp[:, None], rng.normal(size=(n, width)), 0.0)
    m_logabs[:, 0] = m_logabs[:, 1]
    m_angle = np.where(cols <= hp[:, None], rng.uniform(-np.pi, np.pi, size=(n, width)), 0.0)
    m_angle[:, 0] = 0.0
    f0 = rng.uniform(80, 300, size=n)
    hps = np.unique(hp)
    maps = np.zeros((hps.size, width, rd.N_PHASE))
    for j, h in enumerate(hps):
        maps[j, : h + 1] = rd._minphase_map(int(h))
    map_of = np.searchsorted(hps, hp)
    for r_d in (0.3, 0.9, 1.7, 2.5):
        cand = np.full(n, r_d)
        fast = np.empty(n)
        rd._msp_error_jit(
            cand,
            m_logabs,
            m_angle,
            f0,
            hp.astype(np.int64),
            16000.0,
            maps,
            map_of.astype(np.int64),
            fast,
        )
        slow = rd._msp_error(cand, m_logabs, m_angle, f0, hp, 16000.0, maps[map_of])
        np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-12)


def test_compiled_pairwise_sum_rounds_as_numpy():
    rng = np.random.default_rng(7)
    for n in range(0, 1100):
        a = rng.normal(size=n) * 10.0 ** rng.normal(size=n)
        assert voicequality._pairwise_sum(a, 0, n) == a.sum()


def test_compiled_psp_fit_equals_the_numpy_form():
    rng = np.random.default_rng(11)
    k2 = voicequality._K2
    spectra = []
    for t in range(40):  # dB spectra of random pulses: smooth low end, ripples above
        pulse = np.zeros(voicequality.PSP_NFFT)
        width = int(rng.integers(20, 600))
        pulse[:width] = np.sin(np.pi * np.arange(width) / width) ** (1 + t % 3) + 0.01 * rng.random(width)
        spectra.append(voicequality._psp_spectrum(pulse))
    spectra = np.array(spectra)
    fast = voicequality._psp_a_rows(spectra, k2, voicequality._C_K2, voicequality._C_K4, voicequality._NN)
    slow = np.array([voicequality.psp_a(row) for row in spectra])
    np.testing.assert_array_equal(fast, slow)


@pytest.mark.parametrize("n", [25, 26, 90, 400])
def test_compiled_short_filtfilt_is_scipys_to_the_bit(n):
    from scipy.signal import filtfilt

    from cmbert_pipe.acoustic.covarep.hmpd import PDD_TAPS, _filtfilt_short

    rng = np.random.default_rng(n)
    x = np.cos(rng.uniform(0, 6, size=(n, 30)))
    x[:, 3] = 1.0  # constant columns: PDD's z = 1 exactly
    x[:, 4] = 0.0
    x[::3, 5] = -0.0
    hann = 0.5 * (1 - np.cos(2 * np.pi * np.arange(PDD_TAPS) / (PDD_TAPS - 1)))
    for b in (hann / hann.sum(), np.full(PDD_TAPS, 1.0 / PDD_TAPS), rng.random(4)):
        ref = filtfilt(b, [1.0], x, axis=0, padtype="odd", padlen=3 * (b.size - 1))
        got = _filtfilt_short(b, x)
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(ref))


def test_compiled_pdm_filtfilt_equals_the_correlate1d_form():
    from cmbert_pipe.acoustic.covarep import hmpd

    rng = np.random.default_rng(4)
    b = np.full(hmpd.PDM_TAPS, 1.0 / hmpd.PDM_TAPS)
    edge = 3 * (b.size - 1)
    for n in (73, 74, 150, 500):
        x = np.sin(rng.uniform(0, 6, size=(n, 21)))
        x[:, 2] = 0.0  # exact zeros must stay exact (the grid's zero masks)
        ext = np.concatenate((2 * x[:1] - x[edge:0:-1], x, 2 * x[-1:] - x[-2 : -edge - 2 : -1]), axis=0)
        y = hmpd._fir_steady(b, ext)
        ref = hmpd._fir_steady(b, y[::-1])[::-1][edge:-edge]
        np.testing.assert_array_equal(hmpd._filtfilt_m(b, x), ref)


def test_compiled_filtfilts_refuse_inputs_shorter_than_their_padding():
    from cmbert_pipe.acoustic.covarep.hmpd import PDD_TAPS, PDM_TAPS, _filtfilt_m

    for taps in (PDD_TAPS, PDM_TAPS):
        with pytest.raises(ValueError, match="filtfilt needs more than"):
            _filtfilt_m(np.full(taps, 1.0 / taps), np.zeros((3 * (taps - 1), 4)))
