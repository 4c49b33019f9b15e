"""GCI-synchronous voice-quality parameters NAQ, QOQ, H1-H2 and PSP from the IAIF glottal flow.

NAQ: Alku, Bäckström & Vilkman 2002, "Normalized amplitude quotient for parametrization of the
glottal flow" (JASA 112(2)). QOQ: quasi-open quotient, Hacki 1989 / Airas & Alku 2007. H1-H2:
difference of the first two harmonic levels of the flow derivative. PSP: Alku, Strik & Vilkman
1997, "Parabolic spectral parameter" (Speech Communication 22). Conventions: COVAREP74.md §7.
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


def psp_a(spec_db: np.ndarray) -> float:
    """Parabola curvature ``a`` of X_k ~ b + a k^2 fitted on the first N bins, N grown from 3 while
    the normalised error stays below 0.01 (Alku, Strik & Vilkman 1997)."""
    x = np.asarray(spec_db, dtype=float)
    n_max = x.size
    k2 = np.arange(n_max, dtype=float) ** 2
    c_x, c_xk2, c_x2 = np.cumsum(x), np.cumsum(x * k2), np.cumsum(x * x)
    c_k2, c_k4 = np.cumsum(k2), np.cumsum(k2 * k2)
    nn = np.arange(1, n_max + 1, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        a_all = (nn * c_xk2 - c_x * c_k2) / (nn * c_k4 - c_k2**2)

    def fit(n: int) -> tuple[float, float]:
        k2n = k2[:n]
        a = (n * np.sum(x[:n] * k2n) - np.sum(x[:n]) * np.sum(k2n)) / (n * np.sum(k2n**2) - np.sum(k2n) ** 2)
        b = np.mean(x[:n] - a * k2n)
        err = np.sum((x[:n] - a * k2n - b) ** 2) / np.sum(x[:n] ** 2)
        return a, err

    # Vectorised screen for the first N with NE >= 0.01, confirmed with the exact per-N fit.
    with np.errstate(invalid="ignore", divide="ignore"):
        b_all = (c_x - a_all * c_k2) / nn
        sse = c_x2 - 2 * a_all * c_xk2 - 2 * b_all * c_x + a_all**2 * c_k4 + 2 * a_all * b_all * c_k2 + nn * b_all**2
        ne = sse / c_x2
    cand = np.flatnonzero(~(ne[2:] < PSP_NE_LIMIT)) + 3
    guess = int(cand[0]) if cand.size else n_max
    # Confirm the screen with exact fits (the expanded sums can round differently near 0.01).
    a_g, err_g = fit(guess)
    ok = not err_g < PSP_NE_LIMIT or guess == n_max
    if ok and guess > 3:
        ok = fit(guess - 1)[1] < PSP_NE_LIMIT and bool(np.all(ne[2 : guess - 2] < 0.999 * PSP_NE_LIMIT))
    if ok:
        return a_g
    n = 3
    while True:  # the reference loop, only when the screen was ambiguous
        a, err = fit(n)
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


def _h1h2_spectrum(frame: np.ndarray) -> np.ndarray:
    """Two-sided dB spectrum of a 16000-point DFT, built from the real-input half."""
    half = np.abs(scipy.fft.rfft(frame, H1H2_NFFT))
    full = np.concatenate((half, half[-2:0:-1]))
    with np.errstate(divide="ignore"):
        return 20 * np.log10(full)


def vq_params(g: np.ndarray, dg: np.ndarray, fs: int, gcis: np.ndarray) -> VoiceQuality:
    """NAQ, QOQ, H1H2, HRF, PSP for each GCI (COVAREP74.md §7); (L,), (L,), G list -> per-GCI arrays.

    Cycles with F0 outside (20, 500) Hz keep 0 for every parameter.
    """
    gn = np.asarray(gcis, dtype=int) + 1  # the true residual-peak sample numbers
    n_gci = gn.size
    n = g.size
    naq, qoq, h1h2, hrf, psp = (np.zeros(n_gci) for _ in range(5))
    shift = iround(0.0005 * fs)
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
        # H1-H2 from three periods of the flow derivative.
        h = iround(1.5 * t0)
        a0, a1 = max(gn[i] - h, 1), min(gn[i] + h, n)
        frame = dg[a0 - 1 : a1] * 2**15
        frame = frame * hamming_m(frame.size)
        spec = _h1h2_spectrum(frame)
        pos, amp = v_findpeaks(spec, False, f0 / 2)
        if pos.size >= 5:
            n_harm = int(np.floor(HRF_LIMIT_HZ / f0))
            targets = np.arange(1, n_harm + 1) * f0
            idx = np.argmin(np.abs(pos[None, :] - targets[:, None]), axis=1)
            h_amp = amp[idx]
            h1h2[i] = h_amp[0] - h_amp[1]
            hrf[i] = np.sum(h_amp[1:]) / h_amp[0]
        # PSP against a rectangular pulse of the same period.
        if i > 0:
            cyc = g[gn[i - 1] - 1 : gn[i]]
            cyc = cyc - np.min(cyc)
            cyc = cyc / np.max(cyc)
            a = psp_a(_psp_spectrum(cyc))
            a_max = _psp_a_max(int(t0))
            psp[i] = a / a_max
    return VoiceQuality(abscissa=gn.astype(float), naq=naq, qoq=qoq, h1h2=h1h2, hrf=hrf, psp=psp)
