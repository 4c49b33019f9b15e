"""Wavelet-based glottal measures: MDQ and peakSlope.

Both use the Mexican-hat-like filter bank of d'Alessandro & Sturmel / Kane & Gobl
(COVAREP74.md §2.4): h_j(t) = -cos(2 pi f_o t / s) exp(-(t/s)^2 / (2 tau^2)), s = 2^j,
f_o = fs/2, tau = 1/fs, 2001 taps, centre frequency fs/2 / 2^j.
MDQ: Kane & Gobl 2013, "Wavelet maxima dispersion for breathy to tense voice discrimination"
(IEEE TASLP 21(6)). peakSlope: Kane & Gobl 2011, "Identifying regions of non-modal phonation
using features of the wavelet transform" (Interspeech).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft

from cmbert_pipe.acoustic.covarep.mcompat import iround

KERNEL_HALF = 1000  # taps either side of the centre (2001 in all)


@lru_cache(maxsize=16)
def daless_kernel(j: int, fs: int = 16000) -> np.ndarray:
    """Kernel of scale index j (s = 2^j), (2001,)."""
    s = 2.0**j
    t = np.arange(-KERNEL_HALF, KERNEL_HALF + 1) / fs
    tau = 1.0 / fs
    return -np.cos(2 * np.pi * (fs / 2) * t / s) * np.exp(-((t / s) ** 2) / (2 * tau**2))


def wavelet_bank(x: np.ndarray, scales, fs: int = 16000) -> np.ndarray:
    """Filter (L,) ``x`` with each kernel in ``scales``: (len(scales), L), 'same' alignment.

    One FFT of the signal, one multiply + inverse FFT per band (full convolution, then the L
    samples starting at the kernel centre).
    """
    x = np.asarray(x, dtype=float)
    n = x.size
    n_fft = scipy.fft.next_fast_len(n + 2 * KERNEL_HALF, real=True)
    spec = scipy.fft.rfft(x, n_fft)
    out = np.empty((len(scales), n))
    for i, j in enumerate(scales):
        full = scipy.fft.irfft(spec * scipy.fft.rfft(daless_kernel(j, fs), n_fft), n_fft)
        out[i] = full[KERNEL_HALF : KERNEL_HALF + n]
    return out


def mdq(res: np.ndarray, fs: int, gcis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maxima Dispersion Quotient per GCI: (abscissa G_n (sample numbers), MDQ values).

    ``res`` is the order-18 LP residual; ``gcis`` the selected G list.
    """
    res = np.nan_to_num(np.asarray(res, dtype=float), nan=0.0)
    n = res.size
    gn = np.unique(np.asarray(gcis, dtype=int) + 1)
    bands = wavelet_bank(res, range(2, 7), fs)  # (5, L)
    with np.errstate(invalid="ignore", divide="ignore"):
        bands /= np.max(np.abs(bands), axis=1, keepdims=True)
    values = np.zeros(gn.size)
    for i in range(gn.size if gn.size >= 2 else 0):
        t0 = gn[1] - gn[0] if i == 0 else gn[i] - gn[i - 1]
        s = iround(0.2 * t0)
        if not (gn[i] - t0 > 0 and gn[i] + t0 <= n):
            continue
        seg = bands[:, gn[i] - s - 1 : gn[i] + s]  # samples g-s .. g+s
        q = np.argmax(seg, axis=1) + 1
        v = np.mean(np.abs(s - q)) / t0
        values[i] = v if np.isfinite(v) else 0.0
    return (gn - 1).astype(float), values


def peak_slope(x: np.ndarray, fs: int = 16000) -> tuple[np.ndarray, np.ndarray]:
    """peakSlope per 40 ms frame (10 ms hop): (abscissa 320+160j sample numbers, slopes)."""
    x = np.asarray(x, dtype=float)
    n = x.size
    frame_len, hop = iround(0.04 * fs), iround(0.01 * fs)
    n_frames = (n - frame_len) // hop + 1 if n >= frame_len else 0
    if n_frames <= 0:
        return np.zeros(0), np.zeros(0)
    bands = np.abs(wavelet_bank(x, range(6, -1, -1), fs))  # (7, L), 125 Hz .. 8 kHz
    # Max over each frame: frames of 4 hops, so take hop-block maxima then a sliding max of 4.
    per_hop = frame_len // hop
    n_blocks = n_frames + per_hop - 1
    blocks = bands[:, : n_blocks * hop].reshape(7, n_blocks, hop).max(axis=2)
    peaks = blocks[:, :n_frames].copy()
    for k in range(1, per_hop):
        np.maximum(peaks, blocks[:, k : k + n_frames], out=peaks)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.log10(peaks)  # (7, P)
        xs = np.arange(1, 8, dtype=float)
        xc = xs - xs.mean()
        slope = (xc @ (logp - logp.mean(axis=0))) / np.sum(xc * xc)
    slope = np.where(np.isfinite(slope), slope, 0.0)
    starts = 1 + hop * np.arange(n_frames)
    abscissa = np.array([iround((a + a + frame_len - 1) / 2) - 1 for a in starts], dtype=float)
    return abscissa, slope
