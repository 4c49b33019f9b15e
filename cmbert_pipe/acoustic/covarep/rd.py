"""Stage H of COVAREP-74: Rd and Rd_conf by Mean Squared Phase (docs/covarep74.md §10).

The glottal source is the Liljencrants–Fant (LF) model parametrised by Fant's Rd (Fant 1995,
"The LF-model revisited. Transformations and frequency domain analysis"), its spectrum in the
analytic form of Doval, d'Alessandro & Henrich 2003 ("The spectrum of glottal flow models").
Rd is the value whose LF spectrum, divided out of the harmonic partials, leaves the most
minimum-phase residual (smallest mean squared phase difference): Degottex, Roebel & Rodet 2011,
"Phase minimization for glottal model estimation".

Speed: the minimum-phase part is a fixed linear map (H'+1 log magnitudes -> 9 phases) per
number of harmonics H' (folded real cepstrum, then the imaginary part of 9 DFT bins), and
Octave's fminbnd runs in lockstep over all frames. The criterion itself (LF root finding, the
LF spectrum at every harmonic, the map, the phase differences) is one compiled loop per frame
(numba, cached on disk), equal to the vectorised numpy form (:func:`_msp_error`) to rounding.
"""

from __future__ import annotations

import numba
import numpy as np

from cmbert_pipe.acoustic.covarep.mcompat import wrap
from cmbert_pipe.acoustic.covarep.sinusoidal import HarmonicFrames

RD_MIN, RD_MAX = 0.3, 2.5  # search interval of Rd
RD_TOLX = 0.01  # fminbnd TolX
RD_MAXITER = 32  # fminbnd MaxIter
EPS = np.finfo(float).eps
N_PHASE = 9  # R_0..R_8 enter the MSP criterion


def rd_to_te_tp_ta(rd):
    """Fant 1995 regression: Rd -> (te, tp, ta), times relative to T0."""
    rd = np.asarray(rd, dtype=float)
    rap = (-1 + 4.8 * rd) / 100
    rkp = (22.4 + 11.8 * rd) / 100
    rgp = 1 / (4 * ((0.11 * rd / (0.5 + 1.2 * rkp)) - rap) / rkp)
    tp = 1 / (2 * rgp)
    te = tp * (1 + rkp)
    return te, tp, rap


def _solve_epsilon(d_ret, ta):
    """Non-trivial root of 1 - exp(-e d_ret) - e ta = 0 (vectorised Newton from 1/ta; the
    function is concave so the iterates decrease monotonically to the root)."""
    e = 1.0 / (ta + EPS)
    for _ in range(100):
        ex = np.exp(-e * d_ret)
        g = 1 - ex - e * ta
        dg = d_ret * ex - ta
        step = g / dg
        e_new = e - step
        done = np.abs(e_new - e) <= 2 * EPS * np.abs(e_new)
        e = e_new
        if np.all(done):
            break
    return e


def _alpha_fn(alpha, wg, te, a2):
    s, c = np.sin(wg * te), np.cos(wg * te)
    return (alpha**2 + wg**2) * s * a2 + wg * np.exp(-alpha * te) + alpha * s - wg * c


def _solve_alpha(wg, te, a2):
    """Root of the LF area-balance equation for alpha, bracketed by the first sign change over
    [0, 1e1, ..., 1e9], then safeguarded Newton/bisection to machine precision."""
    trials = np.concatenate(([0.0], 10.0 ** np.arange(1, 10)))
    vals = _alpha_fn(trials[None, :], wg[:, None], te[:, None], a2[:, None])  # (n, 10)
    sign_change = np.signbit(vals[:, :-1]) != np.signbit(vals[:, 1:])
    first = np.argmax(sign_change, axis=1)
    lo = trials[first]
    hi = trials[first + 1]
    flo = vals[np.arange(vals.shape[0]), first]
    x = 0.5 * (lo + hi)
    s = np.sin(wg * te)
    for _ in range(200):
        f = _alpha_fn(x, wg, te, a2)
        df = 2 * x * s * a2 - wg * te * np.exp(-te * x) + s
        same = np.signbit(f) == np.signbit(flo)
        lo = np.where(same, x, lo)
        flo = np.where(same, f, flo)
        hi = np.where(same, hi, x)
        with np.errstate(divide="ignore", invalid="ignore"):
            xn = x - f / df
        bad = ~np.isfinite(xn) | (xn <= np.minimum(lo, hi)) | (xn >= np.maximum(lo, hi))
        xn = np.where(bad, 0.5 * (lo + hi), xn)
        done = (np.abs(xn - x) <= 2 * EPS * np.abs(xn)) | (f == 0)
        x = np.where(f == 0, x, xn)
        if np.all(done):
            break
    return x


def lf_spectrum(freqs_hz: np.ndarray, fs: float, t0_s, rd) -> np.ndarray:
    """Analytic LF glottal-flow-derivative spectrum (Doval et al. 2003), Ee = 1.

    freqs_hz (n, H) frequencies; t0_s (n,) periods; rd (n,) Rd values. Returns (n, H) complex.
    """
    t0 = np.asarray(t0_s, dtype=float)[:, None]
    te_r, tp_r, ta_r = rd_to_te_tp_ta(rd)
    te = te_r[:, None] * t0
    tp = tp_r[:, None] * t0
    ta = ta_r[:, None] * t0
    wg = np.pi / tp
    d_ret = t0 - te
    eps_ = _solve_epsilon(d_ret[:, 0], ta[:, 0])[:, None]
    ex = np.exp(-eps_ * d_ret)
    a2 = (1 - ex) / (eps_**2 * ta) - d_ret * ex / (eps_ * ta)
    alpha = _solve_alpha(wg[:, 0], te[:, 0], a2[:, 0])[:, None]
    e0 = -1.0 / (np.exp(alpha * te) * np.sin(wg * te))
    w = 2 * np.pi * np.asarray(freqs_hz, dtype=float)
    sig = alpha - 1j * w
    s, c = np.sin(wg * te), np.cos(wg * te)
    p1 = e0 / (sig**2 + wg**2) * (wg + np.exp(sig * te) * (sig * s - wg * c))
    p2 = np.exp(-1j * w * te) / (eps_ * ta * 1j * w * (eps_ + 1j * w))
    p2 = p2 * (eps_ * (1 - eps_ * ta) * (1 - np.exp(-1j * w * d_ret)) - eps_ * ta * 1j * w)
    return fs * (p1 + p2)


def _minphase_map(hp: int) -> np.ndarray:
    """(H'+1, 9) linear map from ln|N_0..N_H'| to the minimum-phase phases at bins 0..8
    (folded real cepstrum of the Hermitian 2H' spectrum, imaginary part of its DFT)."""
    nfft = 2 * hp
    cep = np.fft.irfft(np.eye(hp + 1), n=nfft, axis=1)  # (H'+1, 2H')
    fold = np.zeros(nfft)
    fold[0] = 1.0
    fold[1:hp] = 2.0
    fold[hp] = 1.0
    k = np.arange(N_PHASE)
    n = np.arange(nfft)
    sin_m = -np.sin(2 * np.pi * np.outer(n, k) / nfft)  # Im of exp(-2 pi i k n / N)
    return (cep * fold[None, :]) @ sin_m


def _msp_error(rd, m_logabs, m_angle, f0, hp, fs, tmap):
    """Mean squared phase error per frame for candidate rd (n,) (§10 steps 2–5).

    m_logabs, m_angle (n, Hm+1): ln|M_h| and angle M_h, zero beyond each frame's H' = hp (n,);
    tmap (n, Hm+1, 9): each frame's minimum-phase map (zero rows beyond its H')."""
    n, width = m_logabs.shape
    rows = np.arange(n)
    h = np.arange(1, width)
    g = lf_spectrum(f0[:, None] * h[None, :], fs, 1.0 / f0, rd)  # (n, Hm)
    beyond = h[None, :] > hp[:, None]
    log_n = np.empty_like(m_logabs)
    ang_n = np.empty_like(m_angle)
    log_n[:, 1:] = np.where(beyond, 0.0, m_logabs[:, 1:] - np.log(np.abs(g)))  # N = M / conj(G)
    ang_n[:, 1:] = np.where(beyond, 0.0, m_angle[:, 1:] + np.angle(g))
    log_n[rows, hp] = log_n[rows, hp - 1]  # N_H' <- |N_H'-1|
    ang_n[rows, hp] = 0.0
    log_n[:, 0] = log_n[:, 1]  # N_0 <- |N_1|
    ang_n[:, 0] = 0.0
    phase_min = np.einsum("nh,nhk->nk", log_n, tmap)
    p = ang_n[:, :N_PHASE] - phase_min  # angle(R_k), up to 2 pi
    dd = wrap(p[:, 1:] - p[:, :-1] - p[:, 1:2])
    return np.mean(dd[:, 1:] ** 2, axis=1)



@numba.njit(cache=True, nogil=True, error_model="numpy")
def _wrap1(p):
    q = p / (2 * np.pi)
    r = np.floor(abs(q) + 0.5)
    return p - (r if q >= 0 else -r) * 2 * np.pi


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _msp_error_jit(rd, m_logabs, m_angle, f0, hp, fs, maps, map_of, out):  # pragma: no cover
    """Compiled :func:`_msp_error` for frames i (out[i]); maps (n_maps, width, 9), map_of (n,)."""
    n, width = m_logabs.shape
    log_n = np.empty(width)
    ang_n = np.zeros(N_PHASE)
    p = np.empty(N_PHASE)
    trials = np.empty(10)
    trials[0] = 0.0
    for j in range(1, 10):
        trials[j] = 10.0 ** j
    vals = np.empty(10)
    for i in range(n):
        t0 = 1.0 / f0[i]
        r = rd[i]
        rap = (-1 + 4.8 * r) / 100
        rkp = (22.4 + 11.8 * r) / 100
        rgp = 1 / (4 * ((0.11 * r / (0.5 + 1.2 * rkp)) - rap) / rkp)
        tp = (1 / (2 * rgp)) * t0
        te = (1 / (2 * rgp)) * (1 + rkp) * t0
        ta = rap * t0
        wg = np.pi / tp
        d_ret = t0 - te
        # epsilon: Newton from 1/ta
        e = 1.0 / (ta + EPS)
        for _ in range(100):
            ex = np.exp(-e * d_ret)
            g = 1 - ex - e * ta
            dg = d_ret * ex - ta
            e_new = e - g / dg
            done = abs(e_new - e) <= 2 * EPS * abs(e_new)
            e = e_new
            if done:
                break
        ex = np.exp(-e * d_ret)
        a2 = (1 - ex) / (e**2 * ta) - d_ret * ex / (e * ta)
        # alpha: first sign change over [0, 1e1..1e9], then safeguarded Newton
        s = np.sin(wg * te)
        c = np.cos(wg * te)
        for j in range(10):
            al = trials[j]
            vals[j] = (al**2 + wg**2) * s * a2 + wg * np.exp(-al * te) + al * s - wg * c
        first = 0
        for j in range(9):
            if np.signbit(vals[j]) != np.signbit(vals[j + 1]):
                first = j
                break
        lo = trials[first]
        hi = trials[first + 1]
        flo = vals[first]
        x = 0.5 * (lo + hi)
        for _ in range(200):
            f = (x**2 + wg**2) * s * a2 + wg * np.exp(-x * te) + x * s - wg * c
            df = 2 * x * s * a2 - wg * te * np.exp(-te * x) + s
            if np.signbit(f) == np.signbit(flo):
                lo = x
                flo = f
            else:
                hi = x
            xn = x - f / df
            if not np.isfinite(xn) or xn <= min(lo, hi) or xn >= max(lo, hi):
                xn = 0.5 * (lo + hi)
            done = abs(xn - x) <= 2 * EPS * abs(xn) or f == 0
            if f != 0:
                x = xn
            if done:
                break
        alpha = x
        exp_at = np.exp(alpha * te)
        e0 = -1.0 / (exp_at * s)
        h_top = hp[i]
        # N = M / conj(G) on harmonics 1..H'-1; N_H' <- |N_H'-1|, N_0 <- |N_1|
        for h in range(1, h_top):
            w = 2 * np.pi * (f0[i] * h)
            sig = alpha - 1j * w
            rot_te = complex(np.cos(w * te), -np.sin(w * te))  # exp(-i w te), shared by p1, p2
            p1 = e0 / (sig**2 + wg**2) * (wg + exp_at * rot_te * (sig * s - wg * c))
            p2 = rot_te / (e * ta * 1j * w * (e + 1j * w))
            rot_d = complex(np.cos(w * d_ret), -np.sin(w * d_ret))
            p2 = p2 * (e * (1 - e * ta) * (1 - rot_d) - e * ta * 1j * w)
            gl = fs * (p1 + p2)
            log_n[h] = m_logabs[i, h] - np.log(abs(gl))
            if h < N_PHASE:
                ang_n[h] = m_angle[i, h] + np.arctan2(gl.imag, gl.real)
        log_n[h_top] = log_n[h_top - 1]
        log_n[0] = log_n[1]
        ang_n[0] = 0.0
        for h in range(h_top, N_PHASE):
            ang_n[h] = 0.0
        tm = maps[map_of[i]]
        for k in range(N_PHASE):
            acc = 0.0
            for h in range(h_top + 1):
                acc += log_n[h] * tm[h, k]
            p[k] = ang_n[k] - acc
        total = 0.0
        for j in range(1, N_PHASE - 1):
            d = _wrap1(p[j + 1] - p[j] - p[1])
            total += d * d
        out[i] = total / (N_PHASE - 2)


def fminbnd_octave(fun, a, b, tolx: float = RD_TOLX, maxiter: int = RD_MAXITER):
    """Octave's fminbnd (Brent 1973 golden-section/parabolic search, docs/covarep74.md §2.7),
    run in lockstep on a vector of independent problems. fun maps (n,) -> (n,) and receives
    only the still-active problems' indices and points. Returns (x, f(x))."""
    a = np.asarray(a, dtype=float).copy()
    b = np.asarray(b, dtype=float).copy()
    n = a.size
    c = 0.5 * (3 - np.sqrt(5))
    x = a + c * (b - a)
    v = x.copy()
    w = x.copy()
    e = np.zeros(n)
    d = np.zeros(n)
    fx = fun(np.arange(n), x)
    fv = fx.copy()
    fw = fx.copy()
    active = np.ones(n, dtype=bool)
    for _ in range(maxiter):
        xm = 0.5 * (a + b)
        tol = 2 * EPS * np.abs(x) + tolx / 3
        active &= ~(np.abs(x - xm) <= (2 * tol - 0.5 * (b - a)))
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        A, B, X, V, W = a[idx], b[idx], x[idx], v[idx], w[idx]
        E, Dd, FX, FV, FW = e[idx], d[idx], fx[idx], fv[idx], fw[idx]
        XM, TOL = xm[idx], tol[idx]
        try_para = np.abs(E) > TOL
        r = (X - W) * (FX - FV)
        q = (X - V) * (FX - FW)
        p = (X - V) * q - (X - W) * r
        q = 2 * (q - r)
        p = p * -np.sign(q)
        q = np.abs(q)
        r = E
        e_para = Dd
        accept = try_para & (np.abs(p) < np.abs(0.5 * q * r)) & (p > q * (A - X)) & (p < q * (B - X))
        with np.errstate(divide="ignore", invalid="ignore"):
            d_para = p / q
        u_try = X + d_para
        near_edge = np.minimum(u_try - A, B - u_try) < 2 * TOL
        d_para = np.where(near_edge, TOL * (np.sign(XM - X) + (XM == X)), d_para)
        e_gold = np.where(X >= XM, A - X, B - X)
        golden = ~accept
        E = np.where(try_para, e_para, E)
        E = np.where(golden, e_gold, E)
        Dd = np.where(golden, c * e_gold, d_para)
        U = X + np.maximum(np.abs(Dd), TOL) * (np.sign(Dd) + (Dd == 0))
        FU = fun(idx, U)
        better = FU < FX
        # better: the bracket end on the far side of x moves to x; else the end on u's side to u
        A_new = np.where(better, np.where(U < X, A, X), np.where(U < X, U, A))
        B_new = np.where(better, np.where(U < X, X, B), np.where(U < X, B, U))
        to_w = ~better & ((FU <= FW) | (W == X))
        to_v = ~better & ~to_w & ((FU <= FV) | (V == X) | (V == W))
        V_new = np.where(better | to_w, W, np.where(to_v, U, V))
        FV_new = np.where(better | to_w, FW, np.where(to_v, FU, FV))
        W_new = np.where(better, X, np.where(to_w, U, W))
        FW_new = np.where(better, FX, np.where(to_w, FU, FW))
        X_new = np.where(better, U, X)
        FX_new = np.where(better, FU, FX)
        a[idx], b[idx], v[idx], fv[idx], w[idx], fw[idx] = A_new, B_new, V_new, FV_new, W_new, FW_new
        x[idx], fx[idx], e[idx], d[idx] = X_new, FX_new, E, Dd
    return x, fx


RD_CHUNK_FRAMES = 2048  # frames optimised together (bounds the (n, Hm+1, 9) map tensor)


def rd_msp(frames: HarmonicFrames, fs: float) -> np.ndarray:
    """Rd and Rd_conf for every Stage-G frame (§10), voiced or not.

    Returns (N, 3) [t_s, Rd, Rd_conf]; the grid abscissa is ``frames.centre`` (= t_s * fs).
    Frames with fewer than 5 harmonics below Nyquist (f0 > ~1.6 kHz: never with SRH's
    50-500 Hz) have no 8-bin MSP criterion and get NaN; so do the frames below the analysis
    floor, which Stage G leaves without partials (``sinusoidal.F0_FLOOR_HZ``, digital silence).
    """
    n = len(frames)
    out = np.full((n, 3), np.nan)
    out[:, 0] = frames.t_s
    if n == 0:
        return out
    with np.errstate(invalid="ignore"):
        hprime = np.sum(frames.freqs_hz <= fs / 2, axis=1) - 1  # partials 0..H' at or below Nyquist
    ok = np.flatnonzero(hprime >= (N_PHASE + 1) // 2)
    if ok.size == 0:
        return out
    width = int(hprime[ok].max()) + 1
    hps = np.unique(hprime[ok])
    maps = np.zeros((hps.size, width, N_PHASE))  # (n_maps, width, 9), zero rows beyond H'
    for j, hp in enumerate(hps):
        maps[j, : hp + 1] = _minphase_map(int(hp))
    for lo in range(0, ok.size, RD_CHUNK_FRAMES):
        idx = ok[lo : lo + RD_CHUNK_FRAMES]
        hp = hprime[idx]
        cols = np.arange(width)[None, :]
        inside = cols <= hp[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            m_logabs = np.where(inside, np.log(frames.amps[idx, :width]), 0.0)
        m_logabs[:, 0] = m_logabs[:, 1]  # M_0 <- |M_1|
        m_angle = np.where(inside, frames.phases[idx, :width], 0.0)
        m_angle[:, 0] = 0.0
        f0 = np.ascontiguousarray(frames.f0_hz[idx], dtype=float)
        map_of = np.searchsorted(hps, hp).astype(np.int64)

        def objective(sub, rd, m_logabs=m_logabs, m_angle=m_angle, f0=f0, hp=hp, map_of=map_of):
            err = np.empty(sub.size)
            _msp_error_jit(np.ascontiguousarray(rd, dtype=float), m_logabs[sub], m_angle[sub],
                           f0[sub], hp[sub].astype(np.int64), float(fs), maps, map_of[sub], err)
            return err

        rd, err = fminbnd_octave(objective, np.full(idx.size, RD_MIN), np.full(idx.size, RD_MAX))
        out[idx, 1] = rd
        out[idx, 2] = 1 - np.sqrt(err) / np.pi
    return out
