"""Stage K of COVAREP-74: HMPD phase features HMPDM_0..24 (PDM) and HMPDD_0..12 (PDD).

Harmonic Model + Phase Distortion of Degottex & Erro 2014, "A uniform phase representation
for the harmonic model in speech synthesis applications" (EURASIP J. Audio Speech Music
Process.): the vocal-tract (minimum) phase is removed from the harmonic phases, the phase
distortion PD_h = phi_{h+1} - phi_h - phi_1 is put on a 1024-point frequency grid, its circular
mean over time gives PDM and its circular standard deviation around a smoothed trend gives PDD;
both are compressed (PDM by mel-like bin groups, PDD by a 12th-order warped cepstrum) and
resampled to 5 ms, then to the 10 ms output grid (docs/covarep74.md §13).

The per-bin time filtering is vectorised over all bins at once; the random fill of bins above
the last harmonic follows Octave's generator when ``rng`` is :class:`OctaveRandom`-like (an
object with ``uniform(rows, cols)`` returning column-major draws), so HMPDM_24 matches the
reference bit for bit; with ``rng=None`` numpy's default generator is used instead.
"""

from __future__ import annotations

import dataclasses

import numba
import numpy as np
import scipy.fft as sfft
from scipy.ndimage import correlate1d

from cmbert_pipe.acoustic.covarep.envelope import hspec_to_mel_cepstrum
from cmbert_pipe.acoustic.covarep.mcompat import wrap
from cmbert_pipe.acoustic.covarep.sinusoidal import HarmonicFrames

HMPD_DFTLEN = 1024  # frequency grid of the phase statistics: 513 bins of 15.625 Hz
PDM_TAPS = 25  # frames of the circular-mean window (~250 ms at 10 ms frames)
PDD_TAPS = 9  # frames of the PDD and trend windows (~90 ms)
PDD_ORDER = 12  # warped-cepstrum order of PDD
PDD_FLOOR = 0.001  # exact zeros of PDD are set to this before the log
HMPD_STEP_S = 0.005  # regular resampling step of the HMPD streams
HMPD_BIN_BLOCK = 16  # fewest frequency bins filtered together (memory ~ frames x block per array)
HMPD_BLOCK_VALUES = 1 << 17  # frames x bins per block: wider blocks on short files (less overhead)
HMPD_FRAME_BLOCK = 1024  # frames per block of the vocal-tract envelope
# PDM bin groups (0-based bins, first..last) from the quadratic Bezier of §13 K7
PDM_GROUPS = tuple((q, q) for q in range(8)) + (
    (8, 9), (10, 12), (13, 16), (17, 21), (22, 27), (28, 35), (36, 45), (46, 57), (58, 71),
    (72, 88), (89, 109), (110, 134), (135, 165), (166, 206), (207, 263), (264, 357), (358, 511),
)


class _NumpyUniform:
    """Fallback generator with the ``uniform(rows, cols)`` interface (not Octave's stream)."""

    def __init__(self, seed: int = 1):
        self._rng = np.random.default_rng(seed)

    def uniform(self, rows: int, cols: int) -> np.ndarray:
        return self._rng.random((cols, rows)).T


def _vtf_min_phase(frames: HarmonicFrames, fs: float) -> np.ndarray:
    """Minimum phase (N, 513) of the harmonic amplitude envelope, per frame (§13 K1).

    The envelope interpolates ln a_h linearly between the forced-harmonic frequencies h mf0
    (with (0, a_1) prepended). Above the last harmonic, COVAREP extends with the last amplitude
    up to Nyquist and mirrors the last points about it, keeping only mirrored points beyond the
    last frequency (checked against the reference, HMPDM to 1e-11): on bins 0..Nyquist both
    amount to holding ln a_H, so the knots are one uniform grid and all frames go at once.
    """
    n = len(frames)
    nbin = HMPD_DFTLEN // 2 + 1
    fb = np.arange(nbin) * fs / HMPD_DFTLEN
    hmax = frames.amps.shape[1] - 1
    fold = np.zeros(HMPD_DFTLEN)
    fold[0] = 1.0
    fold[1 : nbin - 1] = 2.0
    fold[nbin - 1] = 1.0
    out = np.empty((n, nbin))
    for lo in range(0, n, HMPD_FRAME_BLOCK):  # bounded memory on long recordings
        sl = slice(lo, lo + HMPD_FRAME_BLOCK)
        n_harm = frames.n_harm[sl]
        none = n_harm == 0  # frames without partials (f0 below the floor, sinusoidal.py): flat
        with np.errstate(divide="ignore"):
            la = np.log(frames.amps[sl, 1:])  # (n, Hmax) ln a_1..a_Hmax, NaN beyond each H
        last = la[np.arange(la.shape[0]), np.maximum(n_harm - 1, 0)]
        la = np.where(np.arange(1, hmax + 1)[None, :] > n_harm[:, None], last[:, None], la)
        knots = np.concatenate((la[:, :1], la, last[:, None]), axis=1)  # knot i at i * mf0
        knots[none] = 0.0
        mf0 = np.where(none, frames.f0_hz[sl], frames.freqs_hz[sl, 1] if hmax else frames.f0_hz[sl])
        q = fb[None, :] / mf0[:, None]  # (n, 513) position in harmonics
        i0 = np.minimum(np.floor(q).astype(np.int64), hmax)
        frac = q - i0
        y0 = np.take_along_axis(knots, i0, axis=1)
        y1 = np.take_along_axis(knots, i0 + 1, axis=1)
        with np.errstate(invalid="ignore"):
            env = np.exp(np.where(frac == 0, y0, y0 + (y1 - y0) * frac))
        env[np.isnan(env)] = 1e-15
        cep = sfft.irfft(np.log(env), n=HMPD_DFTLEN, axis=1)
        out[sl] = sfft.rfft(cep * fold, axis=1).imag
    return out


def _interp_rows(x_abs: np.ndarray, y: np.ndarray, xq: np.ndarray, outside: float) -> np.ndarray:
    """Row-wise linear interpolation on a shared uniform abscissa x_abs (bins), at per-row
    query points xq (n, m); ``outside`` beyond the abscissa."""
    nb = x_abs.size
    step = x_abs[1] - x_abs[0]
    pos = (xq - x_abs[0]) / step
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, nb - 2)
    frac = pos - i0
    y0 = np.take_along_axis(y, i0, axis=1)
    y1 = np.take_along_axis(y, i0 + 1, axis=1)
    out = y0 + (y1 - y0) * frac
    out = np.where(frac == 0, y0, out)
    out[(pos < 0) | (pos > nb - 1)] = outside
    return out


def phase_distortion(frames: HarmonicFrames, fs: float) -> np.ndarray:
    """PD_1..PD_H per frame, (N, Hmax) (§13 K1–K2): vocal-tract phase removed, then the phase
    difference between successive harmonics minus the fundamental's phase. NaN beyond each
    frame's H."""
    n = len(frames)
    nbin = HMPD_DFTLEN // 2 + 1
    fb = np.arange(nbin) * fs / HMPD_DFTLEN
    width = frames.freqs_hz.shape[1]
    out = np.empty((n, width - 1))
    for lo in range(0, n, HMPD_FRAME_BLOCK):  # bounded memory on long recordings
        sl = slice(lo, lo + HMPD_FRAME_BLOCK)
        phi_min = _vtf_min_phase(_frame_slice(frames, sl), fs)  # (n, 513)
        fr = np.nan_to_num(frames.freqs_hz[sl], nan=-1.0)
        phi_vtf = _interp_rows(fb, phi_min, fr, outside=0.0)
        psi = wrap(frames.phases[sl] - phi_vtf)  # (n, Hmax+1), NaN beyond each frame's H
        psi[:, 0] = 0.0
        rho = np.unwrap(psi - np.arange(width)[None, :] * psi[:, 1:2], axis=1)
        out[sl] = np.diff(rho, axis=1)
    return out


def _frame_slice(frames: HarmonicFrames, sl: slice) -> HarmonicFrames:
    """The frames in ``sl`` (views, no copies)."""
    return HarmonicFrames(*(getattr(frames, f.name)[sl] if getattr(frames, f.name).shape[0] else
                            getattr(frames, f.name) for f in dataclasses.fields(frames)))


def _fir_steady(b: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Causal FIR along axis 0 started in steady state (the past repeats u[0]): what lfilter
    does with lfilter_zi(b, 1) * u[0] as initial state. (Not a running sum: runs of exact
    zeros, e.g. the phase below f0, must stay exactly 0 for the zero masks of the grid.)"""
    m = b.size
    padded = np.concatenate((np.repeat(u[:1], m - 1, axis=0), u), axis=0)
    return correlate1d(padded, b[::-1], axis=0, mode="constant")[m // 2 : m // 2 + u.shape[0]]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _median9_cols(x):  # pragma: no cover - compiled
    """Running median of PDD_TAPS frames along axis 0 of (N, B), zeros outside (what
    ``median_filter(x, size=(9, 1), mode="constant", cval=0)`` gives): one sorted window per
    column, slid by removing the outgoing frame and inserting the incoming one."""
    n, nb = x.shape
    half = PDD_TAPS // 2
    out = np.empty_like(x)
    win = np.zeros((nb, PDD_TAPS))  # sorted windows; the first covers rows -half..half
    for c in range(nb):
        for j in range(0, min(half + 1, n)):
            v = x[j, c]
            k = PDD_TAPS - 1  # insert v into the sorted row (the zeros of rows < 0 are there)
            # drop one zero (a padding row) to make room: shift left from its position
            z = 0
            while z < PDD_TAPS and win[c, z] != 0.0:
                z += 1
            for i in range(z, PDD_TAPS - 1):
                win[c, i] = win[c, i + 1]
            k = PDD_TAPS - 1
            while k > 0 and win[c, k - 1] > v:
                win[c, k] = win[c, k - 1]
                k -= 1
            win[c, k] = v
    for t in range(n):
        if t > 0:
            j_out, j_in = t - half - 1, t + half
            for c in range(nb):
                v_out = x[j_out, c] if j_out >= 0 else 0.0
                v_in = x[j_in, c] if j_in < n else 0.0
                row = win[c]
                z = 0
                while z < PDD_TAPS and row[z] != v_out:
                    z += 1
                if z == PDD_TAPS:  # not found (NaN): rebuild this window
                    for i in range(PDD_TAPS):
                        j = t - half + i
                        row[i] = x[j, c] if 0 <= j < n else 0.0
                    row.sort()
                    continue
                for i in range(z, PDD_TAPS - 1):
                    row[i] = row[i + 1]
                k = PDD_TAPS - 1
                while k > 0 and row[k - 1] > v_in:
                    row[k] = row[k - 1]
                    k -= 1
                row[k] = v_in
        for c in range(nb):
            out[t, c] = win[c, half]
    return out


def _filtfilt_m(b, x):
    """MATLAB filtfilt of FIR ``b`` along axis 0 (odd extension of 3*(len(b)-1) samples, steady
    initial states). Long filters (PDM's 25 frames) use a direct correlation (3x faster than
    scipy's per-column FIR path, equal to 2e-15); the short PDD ones must equal scipy's filtfilt
    to the last bit (PDD = sqrt(-2 ln z) is 0 at z = 1 exactly, so a last-bit change of z there
    moves PDD from 0, then the 0.001 floor, to ~1e-8 and its cepstrum far): they run in
    :func:`_filtfilt_short`, which adds the products in scipy's order."""
    b = np.asarray(b, dtype=float)
    edge = 3 * (b.size - 1)
    if x.shape[0] <= edge:  # the compiled forms index the padding without bounds checks
        raise ValueError(f"filtfilt needs more than {edge} frames, got {x.shape[0]}")
    if b.size <= PDD_TAPS:
        return _filtfilt_short(b, np.ascontiguousarray(x, dtype=float))
    if b.size % 2 and np.array_equal(b, b[::-1]):
        return _filtfilt_symmetric(b, np.ascontiguousarray(x, dtype=float))
    ext = np.concatenate((2 * x[:1] - x[edge:0:-1], x, 2 * x[-1:] - x[-2 : -edge - 2 : -1]), axis=0)
    y = _fir_steady(b, ext)
    y = _fir_steady(b, y[::-1])[::-1]
    return y[edge:-edge]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _fir_steady_symmetric(w, u):  # pragma: no cover - compiled
    """:func:`_fir_steady` for a symmetric odd-length FIR ``w``, adding in the order of
    scipy.ndimage's correlate1d for symmetric weights: x[t] w[s], then (x[t-k] + x[t+k]) w[s-k]
    for k = s..1 (s = len(w) // 2). u (M, B), the past repeating u[0] -> (M, B)."""
    m, nb = u.shape
    s = w.size // 2
    h = w.size - 1  # rows of u[0] prepended
    out = np.empty((m, nb))
    for t in range(m):
        p = t + s  # centre in the prepended sequence
        acc = out[t]
        centre = u[max(p - h, 0)]
        wc = w[s]
        for c in range(nb):
            acc[c] = centre[c] * wc
        for jj in range(-s, 0):
            coef = w[s + jj]
            lo = u[max(p + jj - h, 0)]
            hi = u[max(p - jj - h, 0)]
            for c in range(nb):
                acc[c] += (lo[c] + hi[c]) * coef
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _odd_extension(x, edge):  # pragma: no cover - compiled
    """scipy's ``padtype="odd"`` along axis 0: ``2 x[0] - x[edge..1]`` before and
    ``2 x[-1] - x[-2..-edge-1]`` after. x (N, B) -> (N + 2 edge, B)."""
    n, nb = x.shape
    ext = np.empty((n + 2 * edge, nb))
    for i in range(edge):
        for c in range(nb):
            ext[i, c] = 2 * x[0, c] - x[edge - i, c]
            ext[edge + n + i, c] = 2 * x[n - 1, c] - x[n - 2 - i, c]
    ext[edge : edge + n] = x
    return ext


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _filtfilt_symmetric(b, x):  # pragma: no cover - compiled
    """The long-filter branch of :func:`_filtfilt_m` for a symmetric FIR (PDM's 25-frame mean),
    operation for operation: odd extension by 3 (len(b) - 1) rows, steady-state FIR forward,
    then over the reversed output, reversed back and cut. x (N, B) -> (N, B)."""
    n = x.shape[0]
    edge = 3 * (b.size - 1)
    ext = _odd_extension(x, edge)
    y = _fir_steady_symmetric(b, ext)
    y = _fir_steady_symmetric(b, y[::-1].copy())
    return y[::-1][edge : edge + n].copy()


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _filtfilt_short(b, x):  # pragma: no cover - compiled
    """scipy ``filtfilt(b, [1], x, axis=0, padtype="odd", padlen=3 (len(b) - 1))`` for a short FIR
    ``b`` (at most 12 taps), bit for bit: scipy filters each column with ``np.convolve``, whose
    interior outputs numpy computes as s = 0; s += d[i + j] * b[h - j] for j = 0..h (h = len(b)
    - 1). Only interior outputs reach the kept samples (the padding is 3 h >= 2 h long), so the
    initial states and the edge outputs, which scipy adds / computes otherwise, never matter.
    x (N, B) with N > 3 h -> (N, B)."""
    n, nb = x.shape
    h = b.size - 1
    edge = 3 * h
    ext = _odd_extension(x, edge)
    fwd = np.zeros((n + 2 * h, nb))  # forward outputs edge - h .. edge + n + h - 1 (interior)
    for k in range(n + 2 * h):
        t = edge - h + k
        acc = fwd[k]
        for j in range(h + 1):  # each column adds its products in scipy's order (j = 0..h)
            coef = b[h - j]
            row = ext[t - h + j]
            for c in range(nb):
                acc[c] += row[c] * coef
    out = np.zeros((n, nb))
    for k in range(n):  # backward pass over the reversed forward output, read back in place
        acc = out[k]
        for j in range(h + 1):
            coef = b[h - j]
            row = fwd[k + 2 * h - j]
            for c in range(nb):
                acc[c] += row[c] * coef
    return out


def hmpd_features(frames: HarmonicFrames, fs: float, rng=None, hmax: int | None = None):
    """HMPD streams on the 5 ms grid (§13 K1–K8).

    ``hmax`` is the largest harmonic count of the file (default: of ``frames``; segmented
    extraction passes the whole file's, with ``frames`` padded to its width).

    Returns (u_s (n,), PDM (n, 25) in rad, PDD (n, 13) warped cepstrum). Needs more than 72
    frames (the 25-frame filtfilt), i.e. about 0.82 s of audio; raises ValueError otherwise.
    """
    if rng is None:
        rng = _NumpyUniform(1)
    n_fr = len(frames)
    if n_fr <= 3 * (PDM_TAPS - 1):
        raise ValueError(f"HMPD needs more than {3 * (PDM_TAPS - 1)} analysis frames, got {n_fr}")
    nbin = HMPD_DFTLEN // 2 + 1
    pd = phase_distortion(frames, fs)
    hmax = int(frames.n_harm.max()) if hmax is None else int(hmax)
    # RNG draw #1, column-major: drawing blocks of columns in order gives the same stream
    pe = np.empty((n_fr, hmax + 1))
    for c in range(0, hmax + 1, 8):
        pe[:, c : c + 8] = rng.uniform(n_fr, min(8, hmax + 1 - c))
    pe = wrap(2 * np.pi * pe)
    has_pd = np.arange(hmax)[None, :] < frames.n_harm[:, None]
    pe[:, :hmax] = np.where(has_pd, pd[:, :hmax], pe[:, :hmax])
    pe = wrap(pe)
    # harmonic -> Hertz: knots f0*[0, 0.95, 1, 2, ..., Hmax+1], values unwrap([0, 0, PE])
    vals = np.unwrap(np.concatenate((np.zeros((n_fr, 2)), pe), axis=1), axis=1)
    vals = np.concatenate((vals, np.full((n_fr, 3), np.nan)), axis=1)  # NaN beyond the last knot
    f0 = frames.f0_hz[:, None]
    group_of_bin = np.full(nbin, -1)
    for qi, (lo, hi) in enumerate(PDM_GROUPS):
        group_of_bin[lo : hi + 1] = qi
    group_sum = np.zeros((n_fr, len(PDM_GROUPS)), dtype=complex)
    pdd = np.empty((n_fr, nbin))
    r25 = np.full(PDM_TAPS, 1.0 / PDM_TAPS)
    win = 0.5 * (1 - np.cos(2 * np.pi * np.arange(PDD_TAPS) / (PDD_TAPS - 1)))  # hann, zero ends
    win = win / win.sum()
    r9 = np.full(PDD_TAPS, 1.0 / PDD_TAPS)
    # bins are independent along time: process them in blocks (bounded memory on long files);
    # NaN fills are drawn block by block in increasing bins = Octave's column-major order
    block = max(HMPD_BIN_BLOCK, HMPD_BLOCK_VALUES // n_fr)
    for b_lo in range(0, nbin, block):
        fb = np.arange(b_lo, min(b_lo + block, nbin)) * fs / HMPD_DFTLEN
        r = fb[None, :] / f0  # (N, B) harmonic number of each bin
        fl = np.floor(r)
        idx = np.where(r < 0.95, 0, np.where(r < 1.0, 1, 1 + fl)).astype(np.int64)
        idx = np.minimum(idx, vals.shape[1] - 2)  # only f0 < floor frames reach past: NaN -> fill
        x0 = np.where(r < 0.95, 0.0, np.where(r < 1.0, 0.95, fl)) * f0
        x1 = np.where(r < 0.95, 0.95, np.where(r < 1.0, 1.0, fl + 1)) * f0
        y0 = np.take_along_axis(vals, idx, axis=1)
        y1 = np.take_along_axis(vals, idx + 1, axis=1)
        frac = (fb[None, :] - x0) / (x1 - x0)
        pe_hz = wrap(np.where(frac == 0, y0, y0 + (y1 - y0) * frac))
        nan_pos = np.isnan(pe_hz)
        if nan_pos.any():  # RNG draw #2, column-major over the NaN positions
            cols, rows = np.nonzero(nan_pos.T)
            pe_hz[rows, cols] = wrap(2 * np.pi * rng.uniform(rows.size, 1)[:, 0])
        cos_pe, sin_pe = np.cos(pe_hz), np.sin(pe_hz)
        # PDM: circular mean over 25 frames, summed per compression group
        pdm = np.arctan2(_filtfilt_m(r25, sin_pe), _filtfilt_m(r25, cos_pe))
        groups = group_of_bin[b_lo : b_lo + fb.size]
        ez = np.exp(1j * pdm)
        for qi in np.unique(groups[groups >= 0]):
            group_sum[:, qi] += ez[:, groups == qi].sum(axis=1)
        # PDD: circular std around a median + Hann smoothed trend
        med_c = _median9_cols(cos_pe)
        med_s = _median9_cols(sin_pe)
        trend = np.arctan2(_filtfilt_m(win, med_s), _filtfilt_m(win, med_c))
        q = pe_hz - trend
        z = np.abs(_filtfilt_m(r9, np.cos(q)) + 1j * _filtfilt_m(r9, np.sin(q)))
        with np.errstate(invalid="ignore", divide="ignore"):
            pdd[:, b_lo : b_lo + fb.size] = np.where(z < 1, np.sqrt(-2 * np.log(z)), 0.0)
    # compression: circular mean per group (PDM), warped cepstrum (PDD)
    pdm_c = np.angle(group_sum)
    pdd[:, 0] = pdd[:, 1]
    pdd[pdd == 0] = PDD_FLOOR
    pdd_c = np.concatenate([hspec_to_mel_cepstrum(pdd[lo : lo + HMPD_FRAME_BLOCK], fs, PDD_ORDER)
                            for lo in range(0, n_fr, HMPD_FRAME_BLOCK)])
    # 5 ms regular grid
    t = frames.t_s
    n_u = int(np.floor(t[-1] / HMPD_STEP_S + 1e-10)) + 1
    u = np.arange(n_u) * HMPD_STEP_S
    u[-1] = min(u[-1], t[-1])
    u = u[u >= t[0]]
    pdm_u = _interp_cols(t, pdm_c, u, circular=True)
    pdd_u = _interp_cols(t, pdd_c, u, circular=False)
    return u, pdm_u, pdd_u


def _interp_cols(t, y, tq, circular: bool) -> np.ndarray:
    """Column-wise linear interpolation (0 outside); circular: unwrap along t, then wrap."""
    yy = np.unwrap(y, axis=0) if circular else y
    out = np.empty((tq.size, y.shape[1]))
    for c in range(y.shape[1]):
        out[:, c] = np.interp(tq, t, yy[:, c], left=0.0, right=0.0)
    return wrap(out) if circular else out


def hmpd_to_grid(u_s, pdm, pdd, n_samples: int, fs: float = 16000):
    """Put the 5 ms HMPD streams on the 10 ms output grid tau_k = (79 + 160 k) / fs (§13 K9).

    Returns (PDM (K, 25), PDD (K, 13)); rows outside [u_first, u_last] are 0.
    """
    k = np.arange((n_samples - 80) // 160 + 1)
    tau = (79 + 160 * k) / fs
    return _interp_cols(u_s, pdm, tau, circular=True), _interp_cols(u_s, pdd, tau, circular=False)
