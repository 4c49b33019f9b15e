"""GCI-synchronous voice-quality parameters NAQ, QOQ, H1-H2 and PSP from the IAIF glottal flow.

NAQ: Alku, Bäckström & Vilkman 2002, "Normalized amplitude quotient for parametrization of the
glottal flow" (JASA 112(2)). QOQ: quasi-open quotient, Hacki 1989 / Airas & Alku 2007. H1-H2:
difference of the first two harmonic levels of the flow derivative. PSP: Alku, Strik & Vilkman
1997, "Parabolic spectral parameter" (Speech Communication 22). Conventions: docs/covarep74.md §7.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft

from cmbert_pipe.acoustic.covarep.mcompat import hamming_m, iround, v_findpeaks

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
        # PSP against a rectangular pulse of the same period.
        if i > 0:
            cyc = g[gn[i - 1] - 1 : gn[i]]
            cyc = cyc - np.min(cyc)
            cyc = cyc / np.max(cyc)
            a = psp_a(_psp_spectrum(cyc))
            a_max = _psp_a_max(int(t0))
            psp[i] = a / a_max
    _h1h2_batch(dg, gn, h1h2_jobs, h1h2, hrf)
    return VoiceQuality(abscissa=gn.astype(float), naq=naq, qoq=qoq, h1h2=h1h2, hrf=hrf, psp=psp)


@lru_cache(maxsize=2048)
def _hamming(n: int) -> np.ndarray:
    w = hamming_m(n) * 2.0**15  # the reference scales the frame by 2^15 as well
    w.setflags(write=False)
    return w


def _h1h2_batch(dg: np.ndarray, gn: np.ndarray, jobs: list[tuple[int, float, int]], h1h2: np.ndarray,
                hrf: np.ndarray, chunk: int = 64) -> None:
    """H1-H2 (and HRF) from three periods of the flow derivative around each GCI, in place.

    The 16000-point spectra are computed ``chunk`` frames per batched real FFT.
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
        with np.errstate(divide="ignore"):
            half_db = 20 * np.log10(half)
        for r, (i, f0, _) in enumerate(block):
            spec = np.concatenate((half_db[r], half_db[r, -2:0:-1]))  # two-sided, 16000 bins
            pos, amp = v_findpeaks(spec, False, f0 / 2)
            if pos.size >= 5:
                n_harm = int(np.floor(HRF_LIMIT_HZ / f0))
                targets = np.arange(1, n_harm + 1) * f0
                idx = np.argmin(np.abs(pos[None, :] - targets[:, None]), axis=1)
                h_amp = amp[idx]
                h1h2[i] = h_amp[0] - h_amp[1]
                hrf[i] = np.sum(h_amp[1:]) / h_amp[0]
