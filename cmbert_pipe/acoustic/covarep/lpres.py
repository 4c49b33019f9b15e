"""Linear-prediction residual by frame-wise inverse filtering and overlap-add (docs/covarep74.md §2.1-2.2).

The residual (the "excitation" left after removing the LPC vocal-tract envelope) drives polarity
detection, SRH pitch, SEDREAMS GCIs, MDQ and creak. Autocorrelation LPC per frame (Makhoul 1975,
"Linear prediction: a tutorial review"); all frames are processed at once as a (F, Lw+1) matrix.
"""

from __future__ import annotations

import numba
import numpy as np

from cmbert_pipe.acoustic.covarep.mcompat import hanning_m, iround, lpc_m

_CHUNK_FRAMES = 4096  # frames per vectorised block: bounds memory for long recordings


def _frame_starts(n_samples: int, win_len: int, shift: int) -> np.ndarray:
    """0-based frame starts: frame covers win_len+1 samples, kept while a+Lw < L (1-based a)."""
    n_frames = max(0, -(-(n_samples - win_len - 1) // shift))  # ceil((L - Lw - 1) / S)
    return np.arange(n_frames) * shift


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _inverse_filter(frames, a):  # pragma: no cover - compiled
    """FIR ``a`` (F, p+1) applied to each row of ``frames`` (F, N) with zero initial state.

    y[n] = sum_k a[k] x[n - k], accumulated from the oldest tap to the newest (k = p..0), the
    order in which the sliding-window product sum_j x[n - p + j] a[p - j] adds them.
    """
    n_frames, n = frames.shape
    p = a.shape[1] - 1
    out = np.zeros((n_frames, n))
    for f in range(n_frames):
        y = out[f]
        x = frames[f]
        for j in range(p + 1):
            c = a[f, p - j]
            for i in range(p - j, n):  # earlier samples are the zero initial state
                y[i] += x[i - p + j] * c
    return out


@numba.njit(cache=True, nogil=True)
def _overlap_add(res, starts, frames):  # pragma: no cover - compiled
    """res[s_f + j] += frames[f, j], frame after frame (the order of ``np.add.at``)."""
    for f in range(frames.shape[0]):
        s = starts[f]
        for j in range(frames.shape[1]):
            res[s + j] += frames[f, j]


def lpc_residual_two(x: np.ndarray, x_for_lpc: np.ndarray, win_len: int, shift: int, order: int,
                     peak: float | None = None) -> np.ndarray:
    """Residual of ``x`` with LPC coefficients estimated on ``x_for_lpc`` (§2.2). (L,) -> (L,).

    Frames of ``win_len+1`` samples hopped by ``shift``, windowed by MATLAB ``hanning``,
    inverse-filtered, energy-matched to the windowed frame, overlap-added, and divided by the
    maximum absolute value (``peak`` when given: segmented extraction passes the whole file's,
    1.0 for the raw residual). An all-zero frame gives NaN over its span (as in the reference).
    """
    win_len, shift, order = iround(win_len), iround(shift), iround(order)
    x = np.asarray(x, dtype=float)
    x_for_lpc = np.asarray(x_for_lpc, dtype=float)
    n = x.size
    res = np.zeros(n)
    win = hanning_m(win_len + 1)
    starts = _frame_starts(n, win_len, shift)
    offsets = np.arange(win_len + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        for c0 in range(0, starts.size, _CHUNK_FRAMES):
            idx = starts[c0 : c0 + _CHUNK_FRAMES, None] + offsets  # (F, Lw+1)
            seg = x[idx] * win
            seg_lpc = seg if x_for_lpc is x else x_for_lpc[idx] * win
            a = lpc_m(seg_lpc, order)  # (F, p+1)
            inv = _inverse_filter(seg, a)
            gain = np.sqrt(np.einsum("ij,ij->i", seg, seg) / np.einsum("ij,ij->i", inv, inv))
            inv *= gain[:, None]
            _overlap_add(res, starts[c0 : c0 + _CHUNK_FRAMES], inv)
        if peak is None:
            peak = np.nanmax(np.abs(res)) if n else 0.0
        if peak > 0 and peak != 1.0:
            res = res / peak
    return res


def lpc_residual(x: np.ndarray, win_len: int = 400, shift: int = 80, order: int = 18,
                 peak: float | None = None) -> np.ndarray:
    """COVAREP ``lpcresidual``: (L,) signal -> (L,) normalised LP residual (§2.1); ``peak`` as
    in :func:`lpc_residual_two`."""
    x = np.asarray(x, dtype=float)
    return lpc_residual_two(x, x, win_len, shift, order, peak)
