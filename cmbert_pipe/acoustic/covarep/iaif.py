"""Glottal flow by GCI-synchronous Iterative Adaptive Inverse Filtering (IAIF).

Alku 1992, "Glottal wave analysis with Pitch Synchronous Iterative Adaptive Inverse Filtering"
(Speech Communication 11); COVAREP's variant as specified in docs/covarep74.md §6: two-period
Hann-windowed frames around each GCI, vocal-tract order 20, glottal order 8, leaky integrator
d = 0.99, a 301-tap linear-phase high-pass, overlap-added into flow and flow-derivative signals.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.signal

from cmbert_pipe.acoustic.covarep.lpres import _inverse_filter
from cmbert_pipe.acoustic.covarep.mcompat import hanning_m, iround, lpc_frame, lpc_m


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


def _fir_rows(a: np.ndarray, sig: np.ndarray) -> np.ndarray:
    """Row-wise FIR: coefficients a (B, p+1) applied to sig (B, M), zero initial state (the
    compiled LP-residual inverse filter, which adds the taps from the oldest sample on)."""
    return _inverse_filter(np.ascontiguousarray(sig, dtype=float), np.ascontiguousarray(a, dtype=float))


def iaif_batch(frames: np.ndarray, lengths: np.ndarray, fs: int, p_vt: int = 20, p_gl: int = 8,
               d: float = 0.99, hp: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`iaif_frame` on B windowed frames at once: (B, M) zero-padded rows of ``lengths``
    -> (flow (B, M), flow derivative (B, M)); values past a row's length are meaningless.

    Every step is causal or confined to the row's first N samples (autocorrelation of a
    zero-padded frame equals that of the frame), so padding does not change the results.
    Rows need N > p_vt.
    """
    if hp is None:
        hp = iaif_highpass(fs)
    n_rows, m = frames.shape
    delay = iround(hp.size / 2) - 1
    inside = np.arange(m)[None, :] < lengths[:, None]  # (B, M)
    s = scipy.signal.oaconvolve(frames, hp[None, :], mode="full", axes=1)[:, delay : delay + m]
    s[~inside] = 0.0
    win = np.zeros((n_rows, m))
    for r, n in enumerate(lengths):
        win[r, :n] = _hanning(int(n))
    pre = p_vt + 1
    s0 = s[:, :1]
    ramp = -s0 + np.arange(pre)[None, :] * ((2 * s0) / (pre - 1))
    ramp[:, -1:] = s0
    sig = np.concatenate((ramp, s), axis=1)  # (B, pre + M)
    integ_a = np.array([1.0, -d])

    def integrate(v: np.ndarray) -> np.ndarray:
        return scipy.signal.lfilter([1.0], integ_a, v, axis=1)

    with np.errstate(invalid="ignore", divide="ignore"):
        y = _fir_rows(lpc_m(s * win, 1), sig)[:, pre:]
        g1 = integrate(_fir_rows(lpc_m(y * win, p_vt), sig))[:, pre:]
        y = integrate(_fir_rows(lpc_m(g1 * win, p_gl), sig))[:, pre:]
        dgf = _fir_rows(lpc_m(y * win, p_vt), sig)
        gf = integrate(dgf)[:, pre:]
    return gf, dgf[:, pre:]


_BATCH_MAX_LEN = 4000  # samples: longer (cross-gap) frames are analysed one by one
_BATCH_ROWS = 128
_BLOCK_GCIS = 1024  # GCIs analysed before their outputs are overlap-added


def _analyse_block(x, block, starts, stops, lengths, fs, p_vt, p_gl, d, hp):
    """IAIF outputs {GCI index: (flow, flow derivative)} for the GCIs in ``block``."""
    outputs: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    order = block[np.argsort(lengths[block], kind="stable")]
    order = order[lengths[order] > p_vt]
    batchable = order[lengths[order] <= _BATCH_MAX_LEN]
    lo = 0
    while lo < batchable.size:  # groups of similar length: little padding
        hi = lo + 1
        n_min = lengths[batchable[lo]]
        while hi < batchable.size and hi - lo < _BATCH_ROWS and lengths[batchable[hi]] <= 1.25 * n_min + 16:
            hi += 1
        rows = batchable[lo:hi]
        m = int(lengths[rows].max())
        frames = np.zeros((rows.size, m))
        for r, i in enumerate(rows):
            frames[r, : lengths[i]] = x[starts[i] - 1 : stops[i]] * _hanning(int(lengths[i]))
        gf, dgf = iaif_batch(frames, lengths[rows], fs, p_vt, p_gl, d, hp)
        for r, i in enumerate(rows):
            outputs[int(i)] = (gf[r, : lengths[i]], dgf[r, : lengths[i]])
        lo = hi
    for i in order[lengths[order] > _BATCH_MAX_LEN]:
        seg = x[starts[i] - 1 : stops[i]]
        outputs[int(i)] = iaif_frame(seg * _hanning(seg.size), fs, p_vt, p_gl, d, hp)
    return outputs


def iaif_gci(x: np.ndarray, fs: int, gcis: np.ndarray, p_vt: int | None = None, p_gl: int | None = None,
             d: float = 0.99, t0: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """GCI-synchronous IAIF over the whole signal: (L,) speech, G list -> (g (L,), dg (L,)).

    ``gcis`` are the selected G values used as 1-based sample numbers; frame n spans
    G_n - T0 .. G_n + T0 (T0 = distance to the previous GCI, or to the next for the first).
    Frames of similar length are analysed in batches (:func:`iaif_batch`); the overlap-add
    then runs in GCI order, as in the reference. ``t0`` gives each frame's T0 when ``gcis`` is
    part of a longer list (segmented extraction).
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
    t0 = np.diff(gcis, prepend=2 * gcis[0] - gcis[1]) if t0 is None else np.asarray(t0, dtype=int)
    starts = np.maximum(gcis - t0, 1)
    stops = np.minimum(gcis + t0, n)
    lengths = stops - starts + 1
    for b0 in range(0, gcis.size, _BLOCK_GCIS):  # consecutive GCI blocks bound the memory
        block = np.arange(b0, min(b0 + _BLOCK_GCIS, gcis.size))
        outputs = _analyse_block(x, block, starts, stops, lengths, fs, p_vt, p_gl, d, hp)
        for i in block:  # overlap-add in GCI order, as the reference does
            if i in outputs:
                g[starts[i] - 1 : stops[i]] += outputs[i][0]
                dg[starts[i] - 1 : stops[i]] += outputs[i][1]
    return g, dg
