"""Wavelet-based glottal measures: MDQ and peakSlope.

Both use the Mexican-hat-like filter bank of d'Alessandro & Sturmel / Kane & Gobl
(docs/covarep74.md §2.4): h_j(t) = -cos(2 pi f_o t / s) exp(-(t/s)^2 / (2 tau^2)), s = 2^j,
f_o = fs/2, tau = 1/fs, 2001 taps, centre frequency fs/2 / 2^j.
MDQ: Kane & Gobl 2013, "Wavelet maxima dispersion for breathy to tense voice discrimination"
(IEEE TASLP 21(6)). peakSlope: Kane & Gobl 2011, "Identifying regions of non-modal phonation
using features of the wavelet transform" (Interspeech).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.signal

from cmbert_pipe.acoustic.covarep.mcompat import iround, mround

KERNEL_HALF = 1000  # taps either side of the centre (2001 in all)


@lru_cache(maxsize=16)
def daless_kernel(j: int, fs: int = 16000) -> np.ndarray:
    """Kernel of scale index j (s = 2^j), (2001,)."""
    s = 2.0**j
    t = np.arange(-KERNEL_HALF, KERNEL_HALF + 1) / fs
    tau = 1.0 / fs
    return -np.cos(2 * np.pi * (fs / 2) * t / s) * np.exp(-((t / s) ** 2) / (2 * tau**2))


def iter_wavelet_bands(x: np.ndarray, scales, fs: int = 16000):
    """Yield each band of ``scales`` for (L,) ``x`` in turn, (L,) each, 'same' alignment.

    Overlap-add FFT convolution (full convolution, keeping the L samples that start at the
    kernel centre). One band at a time keeps memory at two signal lengths however long the
    recording.
    """
    x = np.asarray(x, dtype=float)
    n = x.size
    for j in scales:
        full = scipy.signal.oaconvolve(x, daless_kernel(j, fs), mode="full")  # (L + 2000,)
        yield full[KERNEL_HALF : KERNEL_HALF + n]  # a view: no second signal-length copy


def mdq(res: np.ndarray, fs: int, gcis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maxima Dispersion Quotient per GCI: (abscissa G_n (sample numbers), MDQ values).

    ``res`` is the order-18 LP residual; ``gcis`` the selected G list.
    """
    res = np.asarray(res, dtype=float)
    if np.isnan(res).any():
        res = np.nan_to_num(res, nan=0.0)
    n = res.size
    gn = np.unique(np.asarray(gcis, dtype=int) + 1)
    t0 = np.diff(gn, prepend=gn[0] - (gn[1] - gn[0] if gn.size >= 2 else 0))  # (n_gci,)
    half = mround(0.2 * t0).astype(int)
    valid = (gn - t0 > 0) & (gn + t0 <= n) & (gn.size >= 2)
    dist_sum = np.zeros(gn.size)
    for band in iter_wavelet_bands(res, range(2, 7), fs):  # 5 bands, one at a time
        peak = np.max(np.abs(band))
        if peak > 0:
            band /= peak
        for i in np.flatnonzero(valid):
            s = half[i]
            q = int(np.argmax(band[gn[i] - s - 1 : gn[i] + s])) + 1  # samples g-s .. g+s
            dist_sum[i] += abs(s - q)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(valid, dist_sum / 5.0 / t0, 0.0)
    values[~np.isfinite(values)] = 0.0
    return (gn - 1).astype(float), values


def peak_slope(x: np.ndarray, fs: int = 16000) -> tuple[np.ndarray, np.ndarray]:
    """peakSlope per 40 ms frame (10 ms hop): (abscissa 320+160j sample numbers, slopes)."""
    x = np.asarray(x, dtype=float)
    n = x.size
    frame_len, hop = iround(0.04 * fs), iround(0.01 * fs)
    n_frames = (n - frame_len) // hop + 1 if n >= frame_len else 0
    if n_frames <= 0:
        return np.zeros(0), np.zeros(0)
    # Max |band| over each frame: frames are 4 hops long, so take per-hop block maxima and then
    # a sliding maximum over 4 blocks; bands one at a time, 125 Hz .. 8 kHz.
    per_hop = frame_len // hop
    n_blocks = n_frames + per_hop - 1
    peaks = np.empty((7, n_frames))
    for b, band in enumerate(iter_wavelet_bands(x, range(6, -1, -1), fs)):
        blocks = np.abs(band[: n_blocks * hop]).reshape(n_blocks, hop).max(axis=1)
        row = blocks[:n_frames].copy()
        for k in range(1, per_hop):
            np.maximum(row, blocks[k : k + n_frames], out=row)
        peaks[b] = row
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.log10(peaks)  # (7, P)
        xs = np.arange(1, 8, dtype=float)
        xc = xs - xs.mean()
        slope = (xc @ (logp - logp.mean(axis=0))) / np.sum(xc * xc)
    slope = np.where(np.isfinite(slope), slope, 0.0)
    starts = 1 + hop * np.arange(n_frames)
    abscissa = mround((2 * starts + frame_len - 1) / 2) - 1
    return abscissa, slope
