"""MATLAB/Octave-faithful numeric primitives for the COVAREP-74 port.

COVAREP's reference outputs depend on MATLAB conventions that differ from numpy's defaults:
half-away-from-zero rounding, ``hanning`` without zero end points, autocorrelation ``lpc``,
``filtfilt`` padding, ``findpeaks`` plateau rules, Octave's ``fminbnd`` control flow and its
Mersenne-Twister ``rand``. Each helper here reproduces one of them as described in
docs/covarep74.md §0.2, §2.3, §2.6 and §2.7. Everything works on float64 numpy arrays.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import numba
import numpy as np
import scipy.linalg
import scipy.ndimage
import scipy.signal

EPS = float(np.finfo(float).eps)  # 2.2e-16, MATLAB's eps


def mround(v):
    """MATLAB ``round``: half away from zero (numpy rounds half to even). Array or scalar in."""
    if np.isscalar(v):
        return float(math.copysign(math.floor(abs(v) + 0.5), v))
    v = np.asarray(v, dtype=float)
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def iround(v) -> int:
    """:func:`mround` of a scalar as a Python int."""
    return int(mround(float(v)))


# ----------------------------------------------------------------------------- windows
def hanning_m(n: int) -> np.ndarray:
    """MATLAB ``hanning(n)``: symmetric Hann **without** zero end points, (n,)."""
    k = np.arange(1, n + 1, dtype=float)
    return 0.5 * (1.0 - np.cos(2.0 * np.pi * k / (n + 1)))


def hann_m(n: int) -> np.ndarray:
    """MATLAB ``hann(n)``: symmetric Hann **with** zero end points, (n,)."""
    if n == 1:
        return np.ones(1)
    k = np.arange(n, dtype=float)
    return 0.5 * (1.0 - np.cos(2.0 * np.pi * k / (n - 1)))


def blackman_m(n: int) -> np.ndarray:
    """MATLAB ``blackman(n)`` (symmetric), (n,)."""
    if n == 1:
        return np.ones(1)
    k = np.arange(n, dtype=float)
    return 0.42 - 0.5 * np.cos(2.0 * np.pi * k / (n - 1)) + 0.08 * np.cos(4.0 * np.pi * k / (n - 1))


def hamming_m(n: int) -> np.ndarray:
    """MATLAB ``hamming(n)`` (symmetric), (n,)."""
    if n == 1:
        return np.ones(1)
    k = np.arange(n, dtype=float)
    return 0.54 - 0.46 * np.cos(2.0 * np.pi * k / (n - 1))


# ----------------------------------------------------------------------------- LPC
def autocorr_lags(frames: np.ndarray, order: int) -> np.ndarray:
    """Biased autocorrelation lags 0..order of each row: (F, N) -> (F, order+1).

    Only the p+1 needed lags are computed (dot products), never the full O(N^2) correlation.
    """
    frames = np.atleast_2d(frames)
    n = frames.shape[1]
    r = np.zeros((frames.shape[0], order + 1))
    for lag in range(min(order, n - 1) + 1):
        r[:, lag] = np.einsum("ij,ij->i", frames[:, lag:], frames[:, : n - lag])
    return r


def levinson(r: np.ndarray, order: int) -> np.ndarray:
    """Levinson-Durbin recursion on autocorrelation rows: (F, order+1) -> (F, order+1) ``[1, a...]``.

    A row with r0 = 0 (an all-zero frame) yields NaN coefficients, like MATLAB's ``lpc``.
    """
    r = np.atleast_2d(np.asarray(r, dtype=float))
    n_rows = r.shape[0]
    a = np.zeros((n_rows, order + 1))
    a[:, 0] = 1.0
    err = r[:, 0].copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(1, order + 1):
            acc = r[:, i] + np.einsum("ij,ij->i", a[:, 1:i], r[:, i - 1 : 0 : -1]) if i > 1 else r[:, i].copy()
            k = -acc / err
            prev = a[:, 1:i].copy()
            a[:, 1:i] = prev + k[:, None] * prev[:, ::-1]
            a[:, i] = k
            err = err * (1.0 - k * k)
    return a


def lpc_m(frames: np.ndarray, order: int) -> np.ndarray:
    """MATLAB ``lpc``: autocorrelation method, no mean removal. (N,) or (F, N) -> [1, a1..ap] rows."""
    frames = np.asarray(frames, dtype=float)
    single = frames.ndim == 1
    a = levinson(autocorr_lags(np.atleast_2d(frames), order), order)
    return a[0] if single else a


def lpc_frame(x: np.ndarray, order: int) -> np.ndarray:
    """Fast :func:`lpc_m` for one (N,) frame: p+1 dot-product lags and a Levinson Toeplitz solve.

    Returns (order+1,) ``[1, a1..ap]``; NaN coefficients for an all-zero (or singular) frame.
    """
    n = x.size
    r = np.zeros(order + 1)
    for lag in range(min(order, n - 1) + 1):
        r[lag] = np.einsum("i,i->", x[lag:], x[: n - lag])  # no BLAS threads
    if not r[0] > 0:
        return np.concatenate(([1.0], np.full(order, np.nan)))
    try:
        a = scipy.linalg.solve_toeplitz(r[:order], -r[1 : order + 1])
    except (np.linalg.LinAlgError, ValueError):
        return np.concatenate(([1.0], np.full(order, np.nan)))
    return np.concatenate(([1.0], a))


# ----------------------------------------------------------------------------- filters
def filtfilt_m(b, a, x: np.ndarray, axis: int = 0) -> np.ndarray:
    """MATLAB ``filtfilt``: odd extension of 3*(max(len a, len b)-1) samples, along ``axis``."""
    b = np.atleast_1d(np.asarray(b, dtype=float))
    a = np.atleast_1d(np.asarray(a, dtype=float))
    padlen = 3 * (max(len(a), len(b)) - 1)
    return scipy.signal.filtfilt(b, a, x, axis=axis, padtype="odd", padlen=padlen)


def medfilt1_m(x: np.ndarray, n: int) -> np.ndarray:
    """MATLAB ``medfilt1(x, n)`` (odd n, zero padding), column-wise for a (T, C) matrix."""
    x = np.asarray(x, dtype=float)
    size = (n,) + (1,) * (x.ndim - 1)
    return scipy.ndimage.median_filter(x, size=size, mode="constant", cval=0.0)


# ----------------------------------------------------------------------------- interpolation
def interp1_m(x, y, xi, default: float = np.nan) -> np.ndarray:
    """MATLAB ``interp1`` (linear): ``xi`` outside [x[0], x[-1]] gets ``default``.

    ``y`` may be (N,) or (N, C) (columns interpolated independently). ``x`` must be increasing.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    xi = np.asarray(xi, dtype=float)
    inside = (xi >= x[0]) & (xi <= x[-1]) if x.size else np.zeros(xi.shape, bool)
    if y.ndim == 1:
        out = np.full(xi.shape, default, dtype=float)
        if x.size == 1:
            out[inside] = y[0]
        elif x.size:
            out[inside] = np.interp(xi[inside], x, y)
        return out
    out = np.full(xi.shape + y.shape[1:], default, dtype=float)
    if x.size == 1:
        out[inside] = y[0]
    elif x.size:
        # Linear interpolation of all columns at once: segment index and fraction.
        q = xi[inside]
        seg = np.clip(np.searchsorted(x, q, side="right") - 1, 0, x.size - 2)
        frac = (q - x[seg]) / (x[seg + 1] - x[seg])
        vals = y[seg] + frac[:, None] * (y[seg + 1] - y[seg])
        exact = q == x[seg + 1]
        vals[exact] = y[seg[exact] + 1]
        out[inside] = vals
    return out


def wrap(p):
    """COVAREP ``wrap``: ``p - mround(p / 2pi) * 2pi`` (angles into [-pi, pi])."""
    return p - mround(np.asarray(p, dtype=float) / (2.0 * np.pi)) * 2.0 * np.pi


def colon(a: float, step: float, b: float) -> np.ndarray:
    """Octave range ``a:step:b``: floor((b-a)/step + tiny)+1 elements, last clipped to ``b``."""
    n = math.floor((b - a) / step + 1e-10) + 1
    if n <= 0:
        return np.zeros(0)
    out = a + step * np.arange(n, dtype=float)
    out[-1] = min(out[-1], b) if step > 0 else max(out[-1], b)
    return out


def linspace_m(a: float, b: float, n: int) -> np.ndarray:
    """MATLAB ``linspace``: ``a + k*(b-a)/(n-1)``, last element exactly ``b``."""
    if n == 1:
        return np.array([float(b)])
    out = a + np.arange(n, dtype=float) * (b - a) / (n - 1)
    out[-1] = b
    return out


# ----------------------------------------------------------------------------- peak pickers
def _runs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of equal values: (starts, ends inclusive, values), 0-based."""
    change = np.flatnonzero(x[1:] != x[:-1]) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change - 1, [x.size - 1]))
    return starts, ends, x[starts]


def _peak_runs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs that rise from the left and fall to the right: (starts, ends), 0-based."""
    if x.size < 3:
        return np.zeros(0, int), np.zeros(0, int)
    starts, ends, vals = _runs(x)
    if vals.size < 3:
        return np.zeros(0, int), np.zeros(0, int)
    mid = (vals[1:-1] > vals[:-2]) & (vals[1:-1] > vals[2:])
    idx = np.flatnonzero(mid) + 1
    return starts[idx], ends[idx]


def findpeaks_matlab(x: np.ndarray) -> np.ndarray:
    """MATLAB ``findpeaks`` positions (0-based): strictly above the left neighbour and the first
    differing right sample; a flat top reports its first sample; end points are never peaks."""
    starts, _ = _peak_runs(np.asarray(x, dtype=float))
    return starts


def v_findpeaks(x: np.ndarray, quadratic: bool = False, min_sep: float | None = None):
    """VOICEBOX ``v_findpeaks(x, mode, w)`` semantics (docs/covarep74.md §2.3).

    Returns ``(positions, values)`` with **1-based** (possibly fractional) positions. Plateau
    peaks sit at the plateau centre (lower centre for even widths). ``quadratic`` refines by a
    parabola through the 3 samples around the peak. ``min_sep``: repeatedly drop, of each
    consecutive pair closer than or equal to ``min_sep``, the smaller one (the second on ties).
    """
    x = np.asarray(x, dtype=float)
    if not quadratic:  # the compiled form (same comparisons, no rounding involved)
        sep = -1.0 if min_sep is None else float(min_sep)
        return _v_findpeaks_plain(np.ascontiguousarray(x), sep)
    starts, ends = _peak_runs(x)
    k = starts + (ends - starts) // 2  # 0-based lower centre
    v = x[k].copy()
    pos = k.astype(float) + 1.0
    if quadratic and k.size:
        b = 0.5 * (x[k + 1] - x[k - 1])
        a = x[k] - b - x[k - 1]
        j = a > 0
        v[j] = x[k[j]] + 0.25 * b[j] ** 2 / a[j]
        pos[j] = pos[j] + 0.5 * b[j] / a[j]
        width = ends - starts + 1
        pos[~j] = pos[~j] + 0.5 * ((width[~j] - 1) % 2)
    if min_sep is not None and min_sep > 0:
        while pos.size > 1:
            close = np.flatnonzero(np.diff(pos) <= min_sep)
            if close.size == 0:
                break
            drop = np.where(v[close] >= v[close + 1], close + 1, close)
            keep = np.ones(pos.size, bool)
            keep[drop] = False
            pos, v = pos[keep], v[keep]
    return pos, v


# ----------------------------------------------------------------------------- minimiser
def fminbnd_octave(
    fun: Callable[[float], float], a: float, b: float, tol_x: float = 1e-4, max_iter: int = 500, max_fev: int = 500
) -> tuple[float, float]:
    """Octave ``fminbnd``: Brent's golden-section/parabolic search with Octave's control flow.

    (Brent 1973, "Algorithms for Minimization without Derivatives", ch. 5; tolerance term and
    tie rules as in Octave, docs/covarep74.md §2.7.) Returns ``(x_min, f(x_min))``.
    """
    c = 0.5 * (3.0 - math.sqrt(5.0))
    v = w = x = a + c * (b - a)
    e = d = 0.0
    fv = fw = fx = fun(x)
    n_fev, n_iter = 1, 0
    while n_iter < max_iter and n_fev < max_fev:
        xm = 0.5 * (a + b)
        tol = 2.0 * EPS * abs(x) + tol_x / 3.0
        if abs(x - xm) <= (2.0 * tol - 0.5 * (b - a)):
            break
        golden = True
        if abs(e) > tol:
            r = (x - w) * (fx - fv)
            q = (x - v) * (fx - fw)
            p = (x - v) * q - (x - w) * r
            q = 2.0 * (q - r)
            p = -float(np.sign(q)) * p
            q = abs(q)
            r = e
            e = d
            if abs(p) < abs(0.5 * q * r) and p > q * (a - x) and p < q * (b - x):
                d = p / q
                u = x + d
                if (u - a) < 2.0 * tol or (b - u) < 2.0 * tol:
                    d = tol * (math.copysign(1.0, xm - x) if xm != x else 1.0)
                golden = False
        if golden:
            e = (a - x) if x >= xm else (b - x)
            d = c * e
        step = max(abs(d), tol)
        u = x + step * (math.copysign(1.0, d) if d != 0 else 1.0)
        fu = fun(u)
        n_fev += 1
        n_iter += 1
        if fu < fx:
            if u < x:
                b = x
            else:
                a = x
            v, fv = w, fw
            w, fw = x, fx
            x, fx = u, fu
        else:
            if u < x:
                a = u
            else:
                b = u
            if fu <= fw or w == x:
                v, fv = w, fw
                w, fw = u, fu
            elif fu <= fv or v == x or v == w:
                v, fv = u, fu
    return x, fx


# ----------------------------------------------------------------------------- random numbers
class OctaveRandom:
    """Octave's ``rand`` after ``rand('state', seed)``: MT19937 via init_by_array([seed]), 53-bit
    doubles — the same stream as Python's ``random.Random(seed)`` (docs/covarep74.md §2.6)."""

    def __init__(self, seed: int = 1):
        # Python's seeding (init_by_array), then numpy's MT19937 continues from that state: its
        # random_sample builds doubles as random.random() does ((a >> 5) * 2^26 + (b >> 6)) / 2^53,
        # so the stream is the same, drawn vectorised
        state = random.Random(seed).getstate()[1]
        self._rng = np.random.RandomState()
        self._rng.set_state(("MT19937", np.array(state[:624], dtype=np.uint32), int(state[624])))

    def uniform(self, rows: int, cols: int) -> np.ndarray:
        """A (rows, cols) matrix of uniforms filled in column-major order, as Octave does."""
        draws = self._rng.random_sample(rows * cols)
        return draws.reshape(cols, rows).T.copy()


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _v_findpeaks_plain(x, min_sep):  # pragma: no cover - compiled
    """:func:`v_findpeaks` without quadratic refinement; ``min_sep`` <= 0: no pruning."""
    n = x.size
    pos = np.empty(max(n // 2, 1))
    val = np.empty(max(n // 2, 1))
    m = 0
    if n >= 3:
        # runs of equal values: a peak run is higher than the runs on both sides
        prev_val = x[0]
        have_prev = False
        s = 0
        while s < n:
            e = s
            while e + 1 < n and x[e + 1] == x[s]:
                e += 1
            if have_prev and e + 1 < n and x[s] > prev_val and x[s] > x[e + 1]:
                k = s + (e - s) // 2
                pos[m] = k + 1.0
                val[m] = x[k]
                m += 1
            prev_val = x[s]
            have_prev = True
            s = e + 1
    pos = pos[:m].copy()
    val = val[:m].copy()
    if min_sep > 0:
        drop = np.zeros(m, dtype=np.bool_)
        while pos.size > 1:
            any_close = False
            drop[: pos.size] = False
            for i in range(pos.size - 1):
                if pos[i + 1] - pos[i] <= min_sep:
                    any_close = True
                    if val[i] >= val[i + 1]:
                        drop[i + 1] = True
                    else:
                        drop[i] = True
            if not any_close:
                break
            j = 0
            for i in range(pos.size):
                if not drop[i]:
                    pos[j] = pos[i]
                    val[j] = val[i]
                    j += 1
            pos = pos[:j]
            val = val[:j]
    return pos, val
