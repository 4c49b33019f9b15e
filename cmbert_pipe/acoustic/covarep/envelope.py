"""Stage J of COVAREP-74: MCEP_0..24 from a True Envelope (docs/covarep74.md §12).

The True Envelope is the iterative cepstral upper envelope of Röbel & Rodet 2005 ("Efficient
spectral envelope estimation and its application to pitch shifting and envelope preservation")
with the lifter smoothing window and pre-smoothing of Röbel, Villavicencio & Rodet 2007; the
envelope is then mel-warped and turned into a cepstrum (frequency-warped cepstrum, as in
Degottex's ``hspec2fwcep``). Everything is batched over frames: each frame iterates until its
own convergence (per-frame mask), so results equal a frame-by-frame evaluation.

Speed: an iteration only needs the first ``order + 1`` cepstral coefficients and the energy of
the rest, and its smoothed cepstrum has only ``order + 1`` non-zero coefficients. So instead of a
4096-point DCT-I and inverse FFT per iteration, the low coefficients are a product with a cached
cosine table (folded by the even/odd symmetry cos(2 pi q (N/2 - b) / N) = (-1)^q cos(2 pi q b / N),
half the work), the high-quefrency energy comes from Parseval, and the envelope is again a
product with the table. Frames are sorted by order so that each block's table is as narrow as
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
def _cos_tables(dftlen: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Folded cosine tables for quefrencies q < width on bins b = 0..dftlen/4.

    Returns (fe, fo, ge, go): fe (B, We) / fo (B, Wo) give the even / odd cepstral coefficients
    of a symmetric log spectrum from its folded sum / difference (DCT-I weights and 1/dftlen
    included); ge (We, B) / go (Wo, B) give the folded even / odd parts of the envelope.
    """
    quarter = dftlen // 4
    b = np.arange(quarter + 1)[:, None]  # (B, 1)
    q = np.arange(width)[None, :]
    c = np.cos(2 * np.pi * ((q * b) % dftlen) / dftlen)  # (B, W) exact argument reduction
    c[quarter, 1::2] = 0.0  # cos(pi q / 2) for odd q
    wgt = np.full((quarter + 1, 1), 2.0 / dftlen)
    wgt[0] = 1.0 / dftlen
    f = c * wgt  # b = 0 pairs with b = dftlen/2 (weight 1 each); the middle bin has weight 2
    fe, fo = np.ascontiguousarray(f[:, 0::2]), np.ascontiguousarray(f[:, 1::2])
    ge, go = np.ascontiguousarray(c[:, 0::2].T), np.ascontiguousarray(c[:, 1::2].T)
    for t in (fe, fo, ge, go):
        t.flags.writeable = False
    return fe, fo, ge, go


def _te_iterate_table(log_half: np.ndarray, orders: np.ndarray, dftlen: int) -> np.ndarray:
    """:func:`_te_iterate` with cosine tables instead of FFTs (module docstring); same result to
    rounding. ``orders.max() + 1`` must not exceed ``TE_TABLE_ORDERS``. The iterations run in
    the compiled :func:`_te_table_kernel` (one pass over the bins before and one after the two
    table products, which stay BLAS matrix products)."""
    width = min(-(-(int(orders.max()) + 1) // 8) * 8, TE_TABLE_ORDERS)  # a few cached widths
    fe, fo, ge, go = _cos_tables_width(dftlen, width)
    lw = _lifter_half_windows(orders, width)
    dblim = float(np.log(10 ** (TE_PRECISION_DB / 20)))
    return _te_table_kernel(np.ascontiguousarray(log_half, dtype=np.float64), orders.astype(np.int64),
                            fe, fo, ge, go, lw, dblim, TE_MAX_ITER)


@functools.lru_cache(maxsize=8)
def _cos_tables_width(dftlen: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_cos_tables` cut to quefrencies q < width, each table contiguous (for BLAS)."""
    fe, fo, ge, go = _cos_tables(dftlen, TE_TABLE_ORDERS)
    we, wo = (width + 1) // 2, width // 2
    out = (np.ascontiguousarray(fe[:, :we]), np.ascontiguousarray(fo[:, :wo]), ge[:we], go[:wo])
    for t in out[:2]:
        t.flags.writeable = False
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _te_table_kernel(log_half, orders, fe, fo, ge, go, lw, dblim, max_iter):  # pragma: no cover
    """True-Envelope iterations of (n, N/2+1) log spectra by the folded cosine tables.

    Per iteration and frame: fold the log spectrum a into sum / difference halves, with the
    Parseval sums (whole-cepstrum energy, c[N/2]) in the same pass; two table products give the
    cepstrum q < width; the lifter update of Röbel & Rodet 2005; two table products give the
    envelope v; a = max(a, v) and the convergence gap max(a0 - v) in one pass. A converged frame
    is written out and its row replaced by the last active one (NaN gaps count as converged).
    """
    n, nb = log_half.shape
    half = nb - 1
    quarter = half // 2
    dftlen = 2 * half
    we = fe.shape[1]
    wo = fo.shape[1]
    width = we + wo
    a = log_half.copy()
    a0 = log_half.copy()
    ids = np.arange(n)
    ordr = orders.copy()
    lwr = lw.copy()
    cc = np.zeros((n, width))
    v_out = np.empty_like(log_half)
    vb = np.empty_like(log_half)
    s = np.empty((n, quarter + 1))
    d = np.empty((n, quarter + 1))
    cca_e = np.empty((n, we))
    cca_o = np.empty((n, wo))
    ce = np.empty((n, we))
    co = np.empty((n, wo))
    ev = np.empty((n, quarter + 1))
    od = np.empty((n, quarter + 1))
    total = np.empty(n)
    cmid = np.empty(n)
    done = np.zeros(n, dtype=np.bool_)
    p_end = 1.0 / dftlen  # Parseval weights of the symmetric extension
    p_in = 2.0 / dftlen
    m = n
    for _ in range(max_iter):
        for r in range(m):
            tot = 0.0
            cm = 0.0
            for b in range(nb):
                x = a[r, b]
                w = p_end if (b == 0 or b == half) else p_in
                tot += x * x * w
                cm += x * w if b % 2 == 0 else -(x * w)
            total[r] = tot
            cmid[r] = cm
            for b in range(quarter):
                lo = a[r, b]
                hi = a[r, half - b]
                s[r, b] = lo + hi
                d[r, b] = lo - hi
            s[r, quarter] = a[r, quarter]  # the middle bin counts once
            d[r, quarter] = a[r, quarter] - a[r, quarter]  # 0, or NaN as lo - hi gives
        np.dot(s[:m], fe, cca_e[:m])
        np.dot(d[:m], fo, cca_o[:m])
        for r in range(m):
            o = ordr[r]
            c0 = cca_e[r, 0]
            below_half = c0 * c0 + 0.5 * (total[r] - c0 * c0 - cmid[r] * cmid[r])
            head = 0.0
            ei2 = 0.0
            for q in range(min(o + 1, width)):
                c = cca_e[r, q // 2] if q % 2 == 0 else cca_o[r, q // 2]
                head += c * c
                cp = c if q == 0 else 2.0 * c
                ei2 += cp * cp
            eo = np.sqrt(4.0 * (below_half - head))
            ei = np.sqrt(ei2)
            lam = (ei + eo) / ei
            for q in range(width):
                if q <= o:
                    c = cca_e[r, q // 2] if q % 2 == 0 else cca_o[r, q // 2]
                    cp = c if q == 0 else 2.0 * c
                else:
                    cp = 0.0
                old = cc[r, q]
                new = lam * lwr[r, q] * (cp - old) + old
                cc[r, q] = new
                if q % 2 == 0:
                    ce[r, q // 2] = new
                else:
                    co[r, q // 2] = new
        np.dot(ce[:m], ge, ev[:m])
        np.dot(co[:m], go, od[:m])
        for r in range(m):
            gap = -np.inf
            nan = False
            for b in range(quarter + 1):
                e = ev[r, b]
                f = od[r, b]
                for k in range(2):
                    if k == 0:
                        if b == quarter:
                            continue  # bin N/4 is written once, from the mirrored half
                        j, v = b, e + f
                    else:
                        j, v = half - b, e - f
                    vb[r, j] = v
                    x = a[r, j]
                    if v > x or v != v:
                        a[r, j] = v
                    g = a0[r, j] - v
                    if g > gap:
                        gap = g
                    elif g != g:
                        nan = True
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
    natural-log units.
    """
    half_mag = np.atleast_2d(np.abs(half_mag))
    nbin = half_mag.shape[1]
    dftlen = 2 * (nbin - 1)
    f = np.arange(nbin) * fs / dftlen
    mel = MEL_CONST * np.log(1 + f / 700.0)
    phi = (fs / 2) * mel / (MEL_CONST * np.log(1 + (fs / 2) / 700.0))
    # phi is one increasing abscissa shared by all rows: interpolate column-wise
    j = np.clip(np.searchsorted(phi, f, side="right") - 1, 0, nbin - 2)
    frac = (f - phi[j]) / (phi[j + 1] - phi[j])
    warped = half_mag[:, j] * (1 - frac) + half_mag[:, j + 1] * frac
    exact = f == phi[j]
    warped[:, exact] = half_mag[:, j[exact]]
    outside = (f < phi[0]) | (f > phi[-1])
    warped[:, outside] = np.nan
    if np.isnan(warped[:, -1]).all():
        warped[:, -1] = warped[:, -2]
    with np.errstate(divide="ignore"):
        cep = np.fft.irfft(np.log(warped), n=dftlen, axis=1)
    out = cep[:, : order + 1].copy()
    out[:, 1:] *= 2.0
    return out


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
