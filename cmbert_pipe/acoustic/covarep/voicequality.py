"""GCI-synchronous voice-quality parameters NAQ, QOQ, H1-H2 and PSP from the IAIF glottal flow.

NAQ: Alku, Bäckström & Vilkman 2002, "Normalized amplitude quotient for parametrization of the
glottal flow" (JASA 112(2)). QOQ: quasi-open quotient, Hacki 1989 / Airas & Alku 2007. H1-H2:
difference of the first two harmonic levels of the flow derivative. PSP: Alku, Strik & Vilkman
1997, "Parabolic spectral parameter" (Speech Communication 22). Conventions: docs/covarep74.md §7.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numba
import numpy as np
import scipy.fft

from cmbert_pipe.acoustic.covarep.mcompat import _v_findpeaks_plain, hamming_m, iround

F0_MIN_HZ, F0_MAX_HZ = 20.0, 500.0  # exclusive F0 range of analysed cycles
QOQ_LEVEL = 0.5
H1H2_NFFT = 16000  # H1-H2 spectrum: 1 Hz bins (at 16 kHz)
HRF_LIMIT_HZ = 5000.0
PSP_NFFT = 2048
PSP_NE_LIMIT = 0.01


@dataclass(frozen=True)
class VoiceQuality:
    """Per-GCI parameters, all (n_gci,); ``abscissa`` is g_n = G_n + 1 in sample numbers."""

    abscissa: np.ndarray
    naq: np.ndarray
    qoq: np.ndarray
    h1h2: np.ndarray
    hrf: np.ndarray
    psp: np.ndarray


_K2 = np.arange(PSP_NFFT // 2, dtype=float) ** 2
_C_K2, _C_K4 = np.cumsum(_K2), np.cumsum(_K2 * _K2)
_NN = np.arange(1, PSP_NFFT // 2 + 1, dtype=float)


def _psp_fit(x: np.ndarray, n: int) -> tuple[float, float]:
    """Least-squares X_k ~ b + a k^2 on the first n bins: (a, normalised error)."""
    xn, k2n = x[:n], _K2[:n]
    a = (n * np.dot(xn, k2n) - xn.sum() * k2n.sum()) / (n * np.dot(k2n, k2n) - k2n.sum() ** 2)
    resid = xn - a * k2n
    resid -= resid.mean()
    return a, np.dot(resid, resid) / np.dot(xn, xn)


def _psp_screen(x: np.ndarray) -> np.ndarray:
    """Normalised error of the fit for every N = 1..len(x) at once, from running sums."""
    m = x.size
    c_k2, c_k4, nn = _C_K2[:m], _C_K4[:m], _NN[:m]
    c_x, c_xk2, c_x2 = np.cumsum(x), np.cumsum(x * _K2[:m]), np.cumsum(x * x)
    with np.errstate(invalid="ignore", divide="ignore"):
        a = (nn * c_xk2 - c_x * c_k2) / (nn * c_k4 - c_k2**2)
        b = (c_x - a * c_k2) / nn
        sse = c_x2 - 2 * a * c_xk2 - 2 * b * c_x + a**2 * c_k4 + 2 * a * b * c_k2 + nn * b**2
        return sse / c_x2


def psp_a(spec_db: np.ndarray) -> float:
    """Parabola curvature ``a`` of X_k ~ b + a k^2 fitted on the first N bins, N grown from 3 while
    the normalised error stays below 0.01 (Alku, Strik & Vilkman 1997). Bins are
    ``spec_db[:1024]``.

    The first N with error >= 0.01 is located on running sums for all N at once (over a
    128-bin prefix first), then confirmed with the direct fit; if the screen is ambiguous the
    reference's one-N-at-a-time loop decides.
    """
    x = np.asarray(spec_db, dtype=float)[: PSP_NFFT // 2]
    n_max = x.size
    guess = n_max
    for prefix in (min(128, n_max), n_max):
        ne = _psp_screen(x[:prefix])
        cand = np.flatnonzero(~(ne[2:] < PSP_NE_LIMIT))
        if cand.size:
            guess = int(cand[0]) + 3
            break
    a_g, err_g = _psp_fit(x, guess)
    ok = not err_g < PSP_NE_LIMIT or guess == n_max
    if ok and guess > 3:
        ok = bool(np.all(ne[2 : guess - 1] < 0.999 * PSP_NE_LIMIT)) or (
            _psp_fit(x, guess - 1)[1] < PSP_NE_LIMIT and bool(np.all(ne[2 : guess - 2] < 0.999 * PSP_NE_LIMIT))
        )
    if ok:
        return a_g
    n = 3
    while True:  # the reference loop, only when the screen was ambiguous
        a, err = _psp_fit(x, n)
        if not err < PSP_NE_LIMIT or n >= n_max:
            return a
        n += 1


def _psp_spectrum(seg: np.ndarray) -> np.ndarray:
    """dB magnitude of the first 1024 bins of a 2048-point DFT."""
    with np.errstate(divide="ignore"):
        return 20 * np.log10(np.abs(scipy.fft.rfft(seg, PSP_NFFT))[: PSP_NFFT // 2])


@lru_cache(maxsize=1024)
def _psp_a_max(t0: int) -> float:
    """``psp_a`` of the reference rectangular pulse of T0 samples (height 1/T0)."""
    return psp_a(_psp_spectrum(np.full(t0, 1.0 / t0)))


def vq_params(g: np.ndarray, dg: np.ndarray, fs: int, gcis: np.ndarray) -> VoiceQuality:
    """NAQ, QOQ, H1H2, HRF, PSP for each GCI (docs/covarep74.md §7); (L,), (L,), G list -> per-GCI arrays.

    Cycles with F0 outside (20, 500) Hz keep 0 for every parameter.
    """
    gn = np.asarray(gcis, dtype=int) + 1  # the true residual-peak sample numbers
    n_gci = gn.size
    n = g.size
    naq, qoq, h1h2, hrf, psp = (np.zeros(n_gci) for _ in range(5))
    shift = iround(0.0005 * fs)
    h1h2_jobs: list[tuple[int, float, int]] = []  # (GCI index, F0, T0) per analysed cycle
    psp_jobs: list[int] = []  # GCI index i > 0 per analysed cycle (PSP needs the previous GCI)
    for i in range(n_gci if n_gci >= 2 else 0):
        if i == 0:
            start, stop, t0 = 1, gn[0], gn[1] - gn[0]
        else:
            start, stop, t0 = gn[i - 1], gn[i], gn[i] - gn[i - 1]
        f0 = fs / t0
        if not (F0_MIN_HZ < f0 < F0_MAX_HZ):
            continue
        # NAQ and QOQ on the flow cycle with its linear trend between the end points removed.
        seg = g[start - 1 : stop]
        u = seg - np.linspace(seg[0], seg[-1], seg.size)
        stop2 = stop + shift if stop + shift <= n else stop
        d_peak = np.max(np.abs(dg[start - 1 : stop2]))
        z = int(np.argmax(u))  # 0-based
        f_ac = u[z]
        naq[i] = (f_ac / d_peak) / t0
        level = QOQ_LEVEL * f_ac
        t1 = z + 1
        while t1 > 3 and u[t1 - 1] > level:
            t1 -= 1
        t2 = z + 1
        while t2 < u.size - 2 and u[t2 - 1] > level:
            t2 += 1
        qoq[i] = (t2 - t1) / t0
        h1h2_jobs.append((i, f0, int(t0)))
        if i > 0:
            psp_jobs.append(i)
    _psp_batch(g, gn, psp_jobs, psp)
    _h1h2_batch(dg, gn, h1h2_jobs, h1h2, hrf)
    return VoiceQuality(abscissa=gn.astype(float), naq=naq, qoq=qoq, h1h2=h1h2, hrf=hrf, psp=psp)


def _psp_batch(g: np.ndarray, gn: np.ndarray, jobs: list[int], psp: np.ndarray, chunk: int = 64) -> None:
    """PSP of each cycle g[G_(i-1) .. G_i] against a rectangular pulse of the same period, in
    place: the cycle scaled to [0, 1], its 2048-point dB spectrum (``chunk`` cycles per batched
    FFT), the parabola fit of :func:`psp_a` (compiled), divided by the pulse's."""
    for c0 in range(0, len(jobs), chunk):
        block = jobs[c0 : c0 + chunk]
        frames = np.zeros((len(block), PSP_NFFT))
        for r, i in enumerate(block):
            cyc = g[gn[i - 1] - 1 : gn[i]]
            cyc = cyc - np.min(cyc)
            frames[r, : cyc.size] = cyc / np.max(cyc)
        with np.errstate(divide="ignore"):
            spec_db = 20 * np.log10(np.abs(scipy.fft.rfft(frames, axis=1)[:, : PSP_NFFT // 2]))
        a = _psp_a_rows(spec_db, _K2, _C_K2, _C_K4, _NN)
        for r, i in enumerate(block):
            psp[i] = a[r] / _psp_a_max(int(gn[i] - gn[i - 1]))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _pairwise_block(a, lo, n):  # pragma: no cover - compiled
    """numpy's pairwise-sum leaf for n <= 128: 8 accumulators, then the rest in order."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    while i < n - (n % 8):
        j = lo + i
        r0 += a[j]
        r1 += a[j + 1]
        r2 += a[j + 2]
        r3 += a[j + 3]
        r4 += a[j + 4]
        r5 += a[j + 5]
        r6 += a[j + 6]
        r7 += a[j + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _pairwise_sum(a, lo, n):  # pragma: no cover - compiled
    """numpy's pairwise summation of a[lo:lo+n] (halves split at multiples of 8 down to blocks
    of 128), so that sums round exactly as ``ndarray.sum`` does. The recursion runs on an
    explicit stack (numba's on-disk cache does not handle recursive functions)."""
    s_lo = np.empty(64, dtype=np.int64)
    s_n = np.empty(64, dtype=np.int64)
    s_st = np.zeros(64, dtype=np.int64)
    vals = np.empty(64)
    sp, vp = 1, 0
    s_lo[0], s_n[0], s_st[0] = lo, n, 0
    while sp > 0:
        t = sp - 1
        m = s_n[t]
        if m <= 128:
            vals[vp] = _pairwise_block(a, s_lo[t], m)
            vp += 1
            sp -= 1
        elif s_st[t] == 0:
            s_st[t] = 1
            n2 = m // 2
            n2 -= n2 % 8
            s_lo[sp], s_n[sp], s_st[sp] = s_lo[t] + n2, m - n2, 0  # right half, summed second
            s_lo[sp + 1], s_n[sp + 1], s_st[sp + 1] = s_lo[t], n2, 0  # left half, first
            sp += 2
        else:
            vals[vp - 2] = vals[vp - 2] + vals[vp - 1]
            vp -= 1
            sp -= 1
    return vals[0]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _psp_fit_jit(x, n, k2):  # pragma: no cover - compiled
    """:func:`_psp_fit` with the same operations (BLAS dot, numpy's pairwise sums)."""
    xn = x[:n]
    k2n = k2[:n]
    s_x = 0.0 + _pairwise_sum(xn, 0, n)
    s_k2 = 0.0 + _pairwise_sum(k2n, 0, n)
    a = (n * np.dot(xn, k2n) - s_x * s_k2) / (n * np.dot(k2n, k2n) - s_k2 * s_k2)
    resid = xn - a * k2n
    mean = (0.0 + _pairwise_sum(resid, 0, n)) / n
    resid -= mean
    return a, np.dot(resid, resid) / np.dot(xn, xn)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _psp_screen_jit(x, m, k2, c_k2, c_k4, nn):  # pragma: no cover - compiled
    """:func:`_psp_screen` of x[:m], operation for operation."""
    ne = np.empty(m)
    c_x = 0.0
    c_xk2 = 0.0
    c_x2 = 0.0
    for j in range(m):
        v = x[j]
        c_x = v if j == 0 else c_x + v
        c_xk2 = v * k2[j] if j == 0 else c_xk2 + v * k2[j]
        c_x2 = v * v if j == 0 else c_x2 + v * v
        a = (nn[j] * c_xk2 - c_x * c_k2[j]) / (nn[j] * c_k4[j] - c_k2[j] * c_k2[j])
        b = (c_x - a * c_k2[j]) / nn[j]
        sse = (c_x2 - 2 * a * c_xk2 - 2 * b * c_x + a * a * c_k4[j] + 2 * a * b * c_k2[j]
               + nn[j] * (b * b))
        ne[j] = sse / c_x2
    return ne


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _psp_a_rows(spec_db, k2, c_k2, c_k4, nn):  # pragma: no cover - compiled
    """:func:`psp_a` of every row of (n, 1024) dB spectra, with the same decisions."""
    out = np.empty(spec_db.shape[0])
    lim = PSP_NE_LIMIT
    for r in range(spec_db.shape[0]):
        x = np.ascontiguousarray(spec_db[r])
        n_max = x.size
        guess = n_max
        ne = np.empty(0)
        for prefix in (min(128, n_max), n_max):
            ne = _psp_screen_jit(x, prefix, k2, c_k2, c_k4, nn)
            found = -1
            for j in range(2, prefix):
                if not ne[j] < lim:
                    found = j - 2
                    break
            if found >= 0:
                guess = found + 3
                break
        a_g, err_g = _psp_fit_jit(x, guess, k2)
        ok = not err_g < lim or guess == n_max
        if ok and guess > 3:
            ok = True
            for j in range(2, guess - 1):
                if not ne[j] < 0.999 * lim:
                    ok = False
                    break
            if not ok:
                ok = _psp_fit_jit(x, guess - 1, k2)[1] < lim
                if ok:
                    for j in range(2, guess - 2):
                        if not ne[j] < 0.999 * lim:
                            ok = False
                            break
        if ok:
            out[r] = a_g
            continue
        n = 3
        while True:  # the reference loop, only when the screen was ambiguous
            a, err = _psp_fit_jit(x, n, k2)
            if not err < lim or n >= n_max:
                out[r] = a
                break
            n += 1
    return out


@lru_cache(maxsize=2048)
def _hamming(n: int) -> np.ndarray:
    w = hamming_m(n) * 2.0**15  # the reference scales the frame by 2^15 as well
    w.setflags(write=False)
    return w


def _h1h2_batch(dg: np.ndarray, gn: np.ndarray, jobs: list[tuple[int, float, int]], h1h2: np.ndarray,
                hrf: np.ndarray, chunk: int = 64) -> None:
    """H1-H2 (and HRF) from three periods of the flow derivative around each GCI, in place.

    The 16000-point spectra are computed ``chunk`` frames per batched real FFT; peaks are
    picked on magnitudes and only the harmonics' levels are turned into dB.
    """
    n = dg.size
    for c0 in range(0, len(jobs), chunk):
        block = jobs[c0 : c0 + chunk]
        frames = np.zeros((len(block), H1H2_NFFT))
        for r, (i, _, t0) in enumerate(block):
            h = iround(1.5 * t0)
            a0, a1 = max(gn[i] - h, 1), min(gn[i] + h, n)
            seg = dg[a0 - 1 : a1][:H1H2_NFFT]
            frames[r, : seg.size] = seg * _hamming(a1 - a0 + 1)[: seg.size]
        half = np.abs(scipy.fft.rfft(frames, axis=1))  # (c, 8001)
        for r, (i, f0, _) in enumerate(block):
            n_harm = int(np.floor(HRF_LIMIT_HZ / f0))
            bins = _harmonic_peak_bins(half[r], f0, n_harm)
            if bins.size:
                with np.errstate(divide="ignore"):
                    h_amp = 20 * np.log10(half[r, bins])  # dB only where it is read
                h1h2[i] = h_amp[0] - h_amp[1]
                hrf[i] = np.sum(h_amp[1:]) / h_amp[0]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _harmonic_peak_bins(mag, f0, n_harm):  # pragma: no cover - compiled
    """Half-spectrum bins of the peaks nearest to f0, 2 f0, ..., n_harm f0 (Hz = bins here).

    VOICEBOX peaks (pruned closer than f0/2) of the two-sided magnitude spectrum, as COVAREP
    picks them on the dB spectrum: 20 log10 is increasing, so the same peaks win (barring two
    magnitudes within an ulp of each other, which the log cannot tell apart either). Empty when
    fewer than 5 peaks are found (H1-H2 and HRF then stay 0).
    """
    n = mag.size
    two = np.empty(2 * (n - 1))
    two[:n] = mag
    for j in range(n, 2 * (n - 1)):
        two[j] = mag[2 * (n - 1) - j]
    pos, _ = _v_findpeaks_plain(two, f0 / 2)
    if pos.size < 5:
        return np.empty(0, dtype=np.int64)
    out = np.empty(n_harm, dtype=np.int64)
    for h in range(n_harm):
        target = (h + 1) * f0
        best = 0
        best_d = abs(pos[0] - target)
        for k in range(1, pos.size):
            d = abs(pos[k] - target)
            if d < best_d:
                best, best_d = k, d
        j = int(pos[best]) - 1  # 0-based in the two-sided spectrum
        out[h] = j if j < n else 2 * (n - 1) - j
    return out
