"""Stage J of COVAREP-74: MCEP_0..24 from a True Envelope (docs/covarep74.md §12).

The True Envelope is the iterative cepstral upper envelope of Röbel & Rodet 2005 ("Efficient
spectral envelope estimation and its application to pitch shifting and envelope preservation")
with the lifter smoothing window and pre-smoothing of Röbel, Villavicencio & Rodet 2007; the
envelope is then mel-warped and turned into a cepstrum (frequency-warped cepstrum, as in
Degottex's ``hspec2fwcep``). Everything is batched over frames: each frame iterates until its
own convergence (per-frame mask), so results equal a frame-by-frame evaluation.

Speed: an iteration only needs the first ``order + 1`` cepstral coefficients and the energy of
the rest, and its smoothed cepstrum has only ``order + 1`` non-zero coefficients. So instead of a
4096-point DCT-I and inverse FFT per iteration, the low coefficients are products with cached
cosine tables (folded by the symmetry cos(2 pi q (N/2 - b) / N) = (-1)^q cos(2 pi q b / N), and
the even q once more about N/8: 3/8 of the unfolded work), the high-quefrency energy comes from
Parseval, and the envelope is again a product with the tables. Frames are sorted by order so that each block's table is as narrow as
its widest frame. Equal to the FFT form to rounding (~1e-13); orders above ``TE_TABLE_ORDERS``
(silence frames) keep the FFT form.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
import scipy.fft as sfft

from cmbert_pipe.acoustic.covarep.mcompat import mround
from cmbert_pipe.acoustic.covarep.sinusoidal import HarmonicFrames

TE_MAX_ITER = 200  # iterations of the True Envelope
TE_PRECISION_DB = 2.0  # convergence when the envelope is within 2 dB of every peak
MEL_CONST = 1127.01048  # 1000 / ln(1 + 1000/700)
TE_CHUNK_FRAMES = 32  # frames iterated together: 32 x 2049 doubles per array fit in L2 (1.4x faster than 512)
TE_TABLE_ORDERS = 320  # widest lifter (order + 1) done with the cosine tables; wider: FFTs


def _lifter_half_windows(orders: np.ndarray, width: int) -> np.ndarray:
    """(N, width) right halves of hamming(2o+1) (o+1 values from 1.0), zero beyond o."""
    k = np.arange(width)[None, :]
    o = orders[:, None].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = 0.54 - 0.46 * np.cos(2 * np.pi * (k + o) / (2 * o))  # hamming(2o+1)[o + k]
    w = np.where(k <= o, w, 0.0)
    w[:, 0] = 1.0
    return w


@functools.lru_cache(maxsize=4)
def _cos_tables(dftlen: int, width: int) -> tuple[np.ndarray, ...]:
    """Folded cosine tables cos(2 pi q b / N) for quefrencies q < width.

    Returns (f0, f2, fo, g0, g2, go): f0 (E+1, W0) for q = 0 mod 4 and f2 (E+1, W2) for
    q = 2 mod 4 on bins b = 0..N/8 (E = N/8), fo (Q+1, Wo) for odd q on b = 0..N/4 (Q = N/4);
    g0, g2, go are their transposes. Even q fold twice (about N/4 and about N/8), odd q once.
    """
    quarter, eighth = dftlen // 4, dftlen // 8
    q = np.arange(width)[None, :]

    def table(n_bins, qs):
        b = np.arange(n_bins)[:, None]
        return np.cos(2 * np.pi * ((qs * b) % dftlen) / dftlen)  # exact argument reduction

    f0 = table(eighth + 1, q[:, 0::4])
    f2 = table(eighth + 1, q[:, 2::4])
    f2[eighth] = 0.0  # cos(pi q / 4) for q = 2 mod 4
    fo = table(quarter + 1, q[:, 1::2])
    fo[quarter] = 0.0  # cos(pi q / 2) for odd q
    out = tuple(np.ascontiguousarray(t) for t in (f0, f2, fo, f0.T, f2.T, fo.T))
    for t in out:
        t.flags.writeable = False
    return out


def _te_iterate_table(log_half: np.ndarray, orders: np.ndarray, dftlen: int) -> np.ndarray:
    """:func:`_te_iterate` with cosine tables instead of FFTs (module docstring); same result to
    rounding. ``orders.max() + 1`` must not exceed ``TE_TABLE_ORDERS``. The iterations run in
    the compiled :func:`_te_table_kernel` (one pass over the bins before and one after the
    table products, which stay BLAS matrix products)."""
    width = min(-(-(int(orders.max()) + 1) // 8) * 8, TE_TABLE_ORDERS)  # a few cached widths
    tables = _cos_tables_width(dftlen, width)
    lw = _lifter_half_windows(orders, width)
    dblim = float(np.log(10 ** (TE_PRECISION_DB / 20)))
    return _te_table_kernel(np.ascontiguousarray(log_half, dtype=np.float64),
                            orders.astype(np.int64), *tables, lw, dblim, TE_MAX_ITER)


@functools.lru_cache(maxsize=8)
def _cos_tables_width(dftlen: int, width: int) -> tuple[np.ndarray, ...]:
    """:func:`_cos_tables` cut to quefrencies q < width, each table contiguous (for BLAS)."""
    f0, f2, fo, g0, g2, go = _cos_tables(dftlen, TE_TABLE_ORDERS)
    w0, w2, wo = (width + 3) // 4, (width + 1) // 4, width // 2
    out = (np.ascontiguousarray(f0[:, :w0]), np.ascontiguousarray(f2[:, :w2]),
           np.ascontiguousarray(fo[:, :wo]), g0[:w0], g2[:w2], go[:wo])
    for t in out[:3]:
        t.flags.writeable = False
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _te_table_kernel(log_half, orders, f0, f2, fo, g0, g2, go, lw, dblim, max_iter):  # pragma: no cover
    """True-Envelope iterations of (n, N/2+1) log spectra by the folded cosine tables.

    Per iteration and frame: fold the log spectrum a about N/4 (sum s / difference d) and the
    weighted sum again about N/8, with the Parseval sums (whole-cepstrum energy, c[N/2]) in the
    same pass; three table products give the cepstrum q < width (q = 0, 2 mod 4 and odd); the
    lifter update of Röbel & Rodet 2005; three table products give the envelope v; a = max(a, v)
    and the convergence gap max(a0 - v) in one pass. A converged frame is written out and its
    row replaced by the last active one (NaN gaps count as converged).
    """
    n, nb = log_half.shape
    half = nb - 1
    quarter = half // 2
    eighth = quarter // 2
    dftlen = 2 * half
    w0 = f0.shape[1]
    w2 = f2.shape[1]
    wo = fo.shape[1]
    width = lw.shape[1]
    a = log_half.copy()
    a0 = log_half.copy()
    ids = np.arange(n)
    ordr = orders.copy()
    lwr = lw.copy()
    cc = np.zeros((n, width))
    v_out = np.empty_like(log_half)
    vb = np.empty_like(log_half)
    u = np.empty((n, eighth + 1))  # weighted s folded about N/8: sum (q = 0 mod 4) ...
    x2 = np.empty((n, eighth + 1))  # ... and difference (q = 2 mod 4)
    d = np.empty((n, quarter + 1))  # weighted d (odd q)
    ca0 = np.empty((n, w0))
    ca2 = np.empty((n, w2))
    cao = np.empty((n, wo))
    c0 = np.empty((n, w0))
    c2 = np.empty((n, w2))
    co = np.empty((n, wo))
    e0 = np.empty((n, eighth + 1))
    e2 = np.empty((n, eighth + 1))
    od = np.empty((n, quarter + 1))
    t = np.empty(quarter + 1)
    ev = np.empty(quarter + 1)
    total = np.empty(n)
    cmid = np.empty(n)
    done = np.zeros(n, dtype=np.bool_)
    p_end = 1.0 / dftlen  # DCT-I / Parseval weights of the symmetric extension
    p_in = 2.0 / dftlen
    m = n
    for _ in range(max_iter):
        for r in range(m):
            row = a[r]
            # Parseval sums: 4 independent chains over the inner bins (odd / even b)
            sq_o = 0.0
            sq_e = 0.0
            sm_o = 0.0
            sm_e = 0.0
            b = 1
            while b + 1 < half:
                x = row[b]
                y = row[b + 1]
                sq_o += x * x
                sq_e += y * y
                sm_o += x
                sm_e += y
                b += 2
            while b < half:
                x = row[b]
                if b % 2:
                    sq_o += x * x
                    sm_o += x
                else:
                    sq_e += x * x
                    sm_e += x
                b += 1
            x = row[0]
            y = row[half]
            sgn = 1.0 if half % 2 == 0 else -1.0
            total[r] = p_in * (sq_o + sq_e) + p_end * (x * x + y * y)
            cmid[r] = p_in * (sm_e - sm_o) + p_end * (x + sgn * y)
            t[0] = p_end * (row[0] + row[half])
            d[r, 0] = p_end * (row[0] - row[half])
            for b in range(1, quarter):
                lo = row[b]
                hi = row[half - b]
                t[b] = p_in * (lo + hi)
                d[r, b] = p_in * (lo - hi)
            x = row[quarter]  # the middle bin counts once
            t[quarter] = p_in * x
            d[r, quarter] = p_in * (x - x)  # 0, or NaN as lo - hi gives
            for b in range(eighth):
                u[r, b] = t[b] + t[quarter - b]
                x2[r, b] = t[b] - t[quarter - b]
            u[r, eighth] = t[eighth]
            x2[r, eighth] = t[eighth] - t[eighth]
        np.dot(u[:m], f0, ca0[:m])
        np.dot(x2[:m], f2, ca2[:m])
        np.dot(d[:m], fo, cao[:m])
        for r in range(m):
            o = ordr[r]
            cz = ca0[r, 0]
            below_half = cz * cz + 0.5 * (total[r] - cz * cz - cmid[r] * cmid[r])
            head = 0.0
            ei2 = 0.0
            for q in range(min(o + 1, width)):
                k = q % 4
                c = ca0[r, q // 4] if k == 0 else (ca2[r, q // 4] if k == 2 else cao[r, q // 2])
                head += c * c
                cp = c if q == 0 else 2.0 * c
                ei2 += cp * cp
            eo = np.sqrt(4.0 * (below_half - head))
            ei = np.sqrt(ei2)
            lam = (ei + eo) / ei
            for q in range(width):
                k = q % 4
                if q <= o:
                    c = ca0[r, q // 4] if k == 0 else (ca2[r, q // 4] if k == 2 else cao[r, q // 2])
                    cp = c if q == 0 else 2.0 * c
                else:
                    cp = 0.0
                old = cc[r, q]
                new = lam * lwr[r, q] * (cp - old) + old
                cc[r, q] = new
                if k == 0:
                    c0[r, q // 4] = new
                elif k == 2:
                    c2[r, q // 4] = new
                else:
                    co[r, q // 2] = new
        np.dot(c0[:m], g0, e0[:m])
        np.dot(c2[:m], g2, e2[:m])
        np.dot(co[:m], go, od[:m])
        for r in range(m):
            vr = vb[r]
            # even part: E0 + E2 up to N/8, E0 - E2 mirrored above it
            for b in range(eighth + 1):
                ev[b] = e0[r, b] + e2[r, b]
            for b in range(eighth + 1, quarter + 1):
                ev[b] = e0[r, quarter - b] - e2[r, quarter - b]
            for b in range(quarter):
                vr[b] = ev[b] + od[r, b]
            for b in range(quarter + 1):  # bin N/4 is written from this (mirrored) half
                vr[half - b] = ev[b] - od[r, b]
            ar = a[r]
            for j in range(nb):
                v = vr[j]
                x = ar[j]
                ar[j] = v if (v > x or v != v) else x
            a0r = a0[r]
            gap = -np.inf
            nan = False
            for j in range(nb):
                g = a0r[j] - vr[j]
                if g > gap:
                    gap = g
                nan |= g != g
            done[r] = nan or gap <= dblim
        for r in range(m - 1, -1, -1):  # rows above r are active and not done
            if not done[r]:
                continue
            v_out[ids[r]] = vb[r]
            last = m - 1
            if r != last:
                a[r] = a[last]
                a0[r] = a0[last]
                cc[r] = cc[last]
                lwr[r] = lwr[last]
                ordr[r] = ordr[last]
                ids[r] = ids[last]
            m -= 1
        if m == 0:
            return v_out
    for r in range(m):
        v_out[ids[r]] = vb[r]
    return v_out


def _te_iterate(log_half: np.ndarray, orders: np.ndarray, dftlen: int) -> np.ndarray:
    """True-Envelope iterations (§12.3 d–e) on (N, dftlen/2+1) log magnitudes; orders already
    scaled. Returns the log envelope V (N, dftlen/2+1). Converged frames leave the working set
    (compacted arrays), so each frame does exactly its own number of iterations."""
    n = log_half.shape[0]
    dblim = np.log(10 ** (TE_PRECISION_DB / 20))
    width = int(orders.max()) + 1
    half = dftlen // 2
    lw = _lifter_half_windows(orders, width)
    in_order = np.arange(width)[None, :] <= orders[:, None]
    a = log_half.copy()
    a0 = log_half
    cc = np.zeros((n, width))
    o = orders[:, None]
    ids = np.arange(n)
    v_out = np.empty_like(log_half)
    for _ in range(TE_MAX_ITER):
        # real cepstrum of the symmetric log spectrum: irfft(a, dftlen)[:nbin] == DCT-I(a)/dftlen
        cca = sfft.dct(a, type=1, axis=1) * (1.0 / dftlen)  # (n_act, nbin)
        ccp = cca[:, :width] * 2.0
        ccp[:, 0] = cca[:, 0]
        ccp = np.where(in_order, ccp, 0.0)
        head = np.sum(np.where(in_order, cca[:, :width] ** 2, 0.0), axis=1)
        tail = np.einsum("ij,ij->i", cca[:, :half], cca[:, :half]) - head  # q = o+1..half-1
        eo = np.sqrt(4.0 * tail)
        ei = np.sqrt(np.sum(ccp**2, axis=1))
        lam = (ei + eo) / ei
        cc = lam[:, None] * lw * (ccp - cc) + cc
        v = sfft.rfft(cc, n=dftlen, axis=1).real  # (n_act, nbin)
        np.maximum(a, v, out=a)
        gap = np.max(a0 - v, axis=1)
        done = (gap <= dblim) | np.isnan(gap)  # NaN (a zero spectrum) would stay NaN for 200 its
        if done.any():
            v_out[ids[done]] = v[done]
            keep = ~done
            ids, a, a0, cc, lw, in_order, o = ids[keep], a[keep], a0[keep], cc[keep], lw[keep], in_order[keep], o[keep]
            if ids.size == 0:
                return v_out
    v_out[ids] = v
    return v_out


def true_envelope_log(half_spec: np.ndarray, te_orders, dftlen: int = 4096) -> np.ndarray:
    """Log-magnitude True Envelope with smoothing window + pre-smoothing (§12.3).

    half_spec (N, dftlen/2+1) complex or magnitude half spectra; te_orders (N,) cepstral
    orders before scaling (mround(0.5 fs / f0)). Returns ln|E| (N, dftlen/2+1).
    """
    mag = np.abs(np.atleast_2d(half_spec))
    with np.errstate(divide="ignore"):
        log_half = np.log(mag)
    o = np.minimum(np.asarray(te_orders, dtype=float), dftlen // 2 - 1)
    o = np.minimum(mround(1.2 * o), dftlen // 2 - 1)
    # pre-smoothing: the same procedure (window mode only) at half the order
    o_pre = np.minimum(mround(1.2 * np.minimum(mround(o / 2), dftlen // 2 - 1)), dftlen // 2 - 1)
    pre = _te_run(log_half, o_pre.astype(np.int64), dftlen)
    slim = mround(0.25 * dftlen / o).astype(np.int64)
    nbin = dftlen // 2 + 1
    b = np.arange(nbin)[None, :]
    replace = (b < slim[:, None]) | (b > nbin - slim[:, None])  # top: bins nbin-slim+1..nbin-1
    log_a = np.where(replace, pre, log_half)
    return _te_run(log_a, o.astype(np.int64), dftlen)


def _te_run(log_half: np.ndarray, orders: np.ndarray, dftlen: int) -> np.ndarray:
    """The True-Envelope iterations by cosine tables when the orders allow, else by FFTs."""
    if orders.size and int(orders.max()) + 1 <= TE_TABLE_ORDERS and dftlen % 4 == 0:
        return _te_iterate_table(log_half, orders, dftlen)
    return _te_iterate(log_half, orders, dftlen)


def hspec_to_mel_cepstrum(half_mag: np.ndarray, fs: float, order: int) -> np.ndarray:
    """Mel-warped cepstrum of half magnitude spectra (§12.4): (N, B) -> (N, order+1).

    Output is (c0, 2 c1, ..., 2 c_order) of the real cepstrum of the mel-warped log envelope,
    natural-log units. Only order + 1 coefficients are read, so the inverse DFT is a product with
    a cached cosine table instead of a full inverse FFT (equal to rounding).
    """
    half_mag = np.atleast_2d(np.abs(half_mag))
    nbin = half_mag.shape[1]
    j, frac, exact, outside = _mel_warp(nbin, float(fs))
    warped = half_mag[:, j] * (1 - frac) + half_mag[:, j + 1] * frac
    if exact.size:
        warped[:, exact] = half_mag[:, j[exact]]
    if outside.size:
        warped[:, outside] = np.nan
    if np.isnan(warped[:, -1]).all():
        warped[:, -1] = warped[:, -2]
    with np.errstate(divide="ignore"):
        return np.log(warped) @ _cepstrum_table(nbin, order + 1)


@functools.lru_cache(maxsize=8)
def _mel_warp(nbin: int, fs: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Linear-interpolation weights of the mel warping on ``nbin`` bins: each output bin f reads
    the input at phi^-1(f) (j, frac); ``exact`` lists the bins where it hits an input bin,
    ``outside`` those beyond phi (index arrays)."""
    dftlen = 2 * (nbin - 1)
    f = np.arange(nbin) * fs / dftlen
    mel = MEL_CONST * np.log(1 + f / 700.0)
    phi = (fs / 2) * mel / (MEL_CONST * np.log(1 + (fs / 2) / 700.0))
    # phi is one increasing abscissa shared by all rows: interpolate column-wise
    j = np.clip(np.searchsorted(phi, f, side="right") - 1, 0, nbin - 2)
    frac = (f - phi[j]) / (phi[j + 1] - phi[j])
    exact = np.flatnonzero(f == phi[j])
    outside = np.flatnonzero((f < phi[0]) | (f > phi[-1]))
    for t in (j, frac, exact, outside):
        t.flags.writeable = False
    return j, frac, exact, outside


@functools.lru_cache(maxsize=8)
def _cepstrum_table(nbin: int, n_coef: int) -> np.ndarray:
    """(nbin, n_coef) table: a symmetric log spectrum's half (N/2 + 1 bins) times it gives the
    real cepstrum's (c0, 2 c1, ..., 2 c_{n_coef-1}), i.e. irfft(., N)[:n_coef] scaled."""
    dftlen = 2 * (nbin - 1)
    b = np.arange(nbin)[:, None]
    q = np.arange(n_coef)[None, :]
    weight = np.full((nbin, 1), 2.0 / dftlen)  # inner bins appear twice in the full spectrum
    weight[0] = weight[-1] = 1.0 / dftlen
    table = weight * np.cos(2 * np.pi * ((q * b) % dftlen) / dftlen)  # exact argument reduction
    table[:, 1:] *= 2.0
    table = np.ascontiguousarray(table)
    table.flags.writeable = False
    return table


def mcep_frames(frames: HarmonicFrames, fs: float, order: int = 24) -> np.ndarray:
    """MCEP_0..order per Stage-G frame (§12): (N, order+1), natural-log units."""
    if len(frames) == 0:
        return np.empty((0, order + 1))
    te_orders = mround(0.5 * fs / frames.f0_hz)
    out = np.empty((len(frames), order + 1))
    by_order = np.argsort(te_orders, kind="stable")  # similar orders share a block (narrow tables)
    for lo in range(0, len(frames), TE_CHUNK_FRAMES):  # small blocks stay in the CPU cache
        sl = by_order[lo : lo + TE_CHUNK_FRAMES]
        log_env = true_envelope_log(frames.spectrum[sl], te_orders[sl])
        out[sl] = hspec_to_mel_cepstrum(np.exp(log_env), fs, order)
    return out


def mcep_abscissa(n_frames: int, n_samples: int) -> np.ndarray:
    """Quirk §12.5: MCEP frame q sits at mround(linspace(1, L, M))[q] (sample numbers)."""
    if n_frames == 1:
        return np.array([float(n_samples)])
    k = np.arange(n_frames)
    lin = 1 + k * (n_samples - 1) / (n_frames - 1)
    lin[-1] = n_samples
    return mround(lin)
