"""Glottal flow by GCI-synchronous Iterative Adaptive Inverse Filtering (IAIF).

Alku 1992, "Glottal wave analysis with Pitch Synchronous Iterative Adaptive Inverse Filtering"
(Speech Communication 11); COVAREP's variant as specified in COVAREP74.md §6: two-period
Hann-windowed frames around each GCI, vocal-tract order 20, glottal order 8, leaky integrator
d = 0.99, a 301-tap linear-phase high-pass, overlap-added into flow and flow-derivative signals.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.signal

from cmbert_pipe.acoustic.covarep.mcompat import hanning_m, iround, lpc_frame


@lru_cache(maxsize=4)
def iaif_highpass(fs: int = 16000) -> np.ndarray:
    """Least-squares FIR high-pass (stop 40 Hz, pass 70 Hz), order round(300/16000 fs) made even."""
    order = iround(300 / 16000 * fs)
    order += order % 2
    return scipy.signal.firls(order + 1, [0, 40, 70, fs / 2], [0, 0, 1, 1], fs=fs)


@lru_cache(maxsize=4096)
def _hanning(n: int) -> np.ndarray:
    w = hanning_m(n)
    w.setflags(write=False)
    return w


def _fir(a: np.ndarray, sig: np.ndarray) -> np.ndarray:
    """FIR filter with zero initial state (short ``a``)."""
    if not np.all(np.isfinite(a)):
        return np.full_like(sig, np.nan)
    return np.convolve(sig, a)[: sig.size]


def iaif_frame(frame: np.ndarray, fs: int, p_vt: int = 20, p_gl: int = 8, d: float = 0.99,
               hp: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """IAIF of one windowed frame (N,) -> (glottal flow (N,), flow derivative (N,)), or None if N <= p_vt."""
    n = frame.size
    if n <= p_vt:
        return None
    if hp is None:
        hp = iaif_highpass(fs)
    delay = iround(hp.size / 2) - 1
    s = np.convolve(frame, hp)[delay : delay + n]  # zero-delay linear-phase high-pass
    win = _hanning(n)
    pre = p_vt + 1
    sig = np.concatenate((np.linspace(-s[0], s[0], pre), s))
    integ_a = np.array([1.0, -d])

    def integrate(v: np.ndarray) -> np.ndarray:
        return scipy.signal.lfilter([1.0], integ_a, v)

    hg1 = lpc_frame(s * win, 1)
    y = _fir(hg1, sig)[pre:]
    hvt1 = lpc_frame(y * win, p_vt)
    g1 = integrate(_fir(hvt1, sig))[pre:]
    hg2 = lpc_frame(g1 * win, p_gl)
    y = integrate(_fir(hg2, sig))[pre:]
    hvt2 = lpc_frame(y * win, p_vt)
    dgf = _fir(hvt2, sig)
    gf = integrate(dgf)[pre:]
    return gf, dgf[pre:]


def iaif_gci(x: np.ndarray, fs: int, gcis: np.ndarray, p_vt: int | None = None, p_gl: int | None = None,
             d: float = 0.99) -> tuple[np.ndarray, np.ndarray]:
    """GCI-synchronous IAIF over the whole signal: (L,) speech, G list -> (g (L,), dg (L,)).

    ``gcis`` are the selected G values used as 1-based sample numbers; frame n spans
    G_n - T0 .. G_n + T0 (T0 = distance to the previous GCI, or to the next for the first).
    """
    x = np.asarray(x, dtype=float)
    n = x.size
    p_vt = 2 * iround(fs / 2000) + 4 if p_vt is None else p_vt
    p_gl = 2 * iround(fs / 4000) if p_gl is None else p_gl
    hp = iaif_highpass(fs)
    g = np.zeros(n)
    dg = np.zeros(n)
    gcis = np.asarray(gcis, dtype=int)
    if gcis.size < 2:
        return g, dg
    for i, gc in enumerate(gcis):
        t0 = gcis[1] - gcis[0] if i == 0 else gc - gcis[i - 1]
        start = max(gc - t0, 1)
        stop = min(gc + t0, n)
        seg = x[start - 1 : stop]
        out = iaif_frame(seg * _hanning(seg.size), fs, p_vt, p_gl, d, hp)
        if out is None:
            continue
        g[start - 1 : stop] += out[0]
        dg[start - 1 : stop] += out[1]
    return g, dg
