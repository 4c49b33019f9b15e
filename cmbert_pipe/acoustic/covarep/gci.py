"""Glottal closure instants by SEDREAMS, and their selection by voicing.

Drugman, Thomas, Gudnason, Naylor & Dutoit 2012, "Detection of glottal closure instants from
speech signals: a quantitative review" (IEEE TASLP 20(3)); docs/covarep74.md §5. A mean-based signal
(a Blackman-weighted moving average of ~1.7 mean periods) brackets each cycle; the GCI is the
LP-residual peak inside the interval where GCIs usually fall relative to that cycle.
"""

from __future__ import annotations

import numpy as np
import scipy.signal

from cmbert_pipe.acoustic.covarep.mcompat import (
    blackman_m,
    filtfilt_m,
    findpeaks_matlab,
    interp1_m,
    iround,
    mround,
)

# Octave ellip(5, 3, 60, 50/8000, 'high') coefficients (docs/covarep74.md §2.5).
SEDREAMS_HP_B = np.array([
    0.94744849173055601, -4.7370269254373341, 9.473838328110892, -9.473838328110892,
    4.7370269254373341, -0.9474484917305559,
])
SEDREAMS_HP_A = np.array([
    1.0, -4.8934871041138752, 9.5766144163595985, -9.3687965940097229, 4.5816993445812901,
    -0.89603003149305904,
])


def mean_based_signal(x: np.ndarray, fs: int, f0_mean_hz: float) -> np.ndarray:
    """(L,) speech -> (L,) high-passed, max-normalised mean-based signal (§5 steps 2-4)."""
    t0_mean = iround(fs / f0_mean_hz)
    half_l = iround(1.7 * t0_mean / 2)
    w = blackman_m(2 * half_l + 1)
    y = scipy.signal.lfilter(w, [float(w.size)], x)
    mbs = np.zeros_like(x)
    if x.size > 2 * half_l:
        mbs[half_l : x.size - half_l] = y[2 * half_l :]
    mbs = filtfilt_m(SEDREAMS_HP_B, SEDREAMS_HP_A, mbs)
    peak = np.max(np.abs(mbs))
    return mbs / peak if peak > 0 else mbs


def sedreams_cycles(x: np.ndarray, fs: int, f0_mean_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """(minima, maxima) of the mean-based signal as paired 1-based sample numbers (§5 step 5):
    maxima before the first minimum and minima after the last maximum dropped."""
    mbs = mean_based_signal(np.asarray(x, dtype=float), fs, f0_mean_hz)
    maxis = findpeaks_matlab(mbs) + 1  # 1-based
    minis = findpeaks_matlab(-mbs) + 1
    empty = np.zeros(0, dtype=int)
    if maxis.size == 0 or minis.size == 0:
        return empty, empty
    first_ok = np.searchsorted(maxis, minis[0], side="left")  # drop maxima before the first minimum
    maxis = maxis[first_ok:]
    if maxis.size == 0:
        return empty, empty
    minis = minis[minis <= maxis[-1]]  # drop minima after the last maximum
    n_pairs = min(minis.size, maxis.size)
    return minis[:n_pairs], maxis[:n_pairs]


def sedreams_ratio_samples(res: np.ndarray, minis: np.ndarray, maxis: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray]:
    """(1-based sample numbers of residual samples > 0.4, their relative position within their
    nearest-minimum cycle); ``res`` already normalised to its peak. The median of the positions
    is the file's ``ratio``."""
    posis = np.flatnonzero(res > 0.4) + 1
    if posis.size == 0 or minis.size == 0:
        return posis, np.zeros(0)
    n_pairs = minis.size
    right = np.clip(np.searchsorted(minis, posis, side="left"), 0, n_pairs - 1)
    left = np.clip(right - 1, 0, n_pairs - 1)
    nearest = np.where(np.abs(minis[left] - posis) <= np.abs(minis[right] - posis), left, right)
    return posis, (posis - minis[nearest]) / (maxis[nearest] - minis[nearest])


def sedreams(x: np.ndarray, fs: int, f0_mean_hz: float, res: np.ndarray,
             ratio: float | None = None, res_peak: float | None = None) -> np.ndarray:
    """SEDREAMS GCIs as **1-based sample numbers** of the residual peaks, (n_gci,) int.

    ``res`` is the order-18 LP residual of ``x`` (NaN allowed; treated as 0). The residual is
    normalised by its peak and ``ratio`` is the median relative position of its strong samples
    (:func:`sedreams_ratio_samples`); segmented extraction passes both for the whole file.
    """
    x = np.asarray(x, dtype=float)
    n = x.size
    res = np.nan_to_num(np.asarray(res, dtype=float), nan=0.0)
    minis, maxis = sedreams_cycles(x, fs, f0_mean_hz)
    if minis.size == 0:
        return np.zeros(0, dtype=int)
    peak = np.max(np.abs(res)) if res_peak is None else res_peak
    if peak > 0 and peak != 1.0:
        res = res / peak
    # Relative position of strong residual samples within their (nearest-minimum) cycle.
    if ratio is None:
        _, rel = sedreams_ratio_samples(res, minis, maxis)
        ratio = float(np.median(rel)) if rel.size else 0.0
    gcis = []
    for lo_min, hi_max in zip(minis, maxis):
        interval = hi_max - lo_min
        start = lo_min + int(mround((ratio - 0.35) * interval))
        stop = lo_min + int(mround((ratio + 0.35) * interval))
        start = max(start, 1)
        if start > n:
            break
        stop = min(stop, n)
        if stop > 1:
            seg = res[start - 1 : stop]
            if seg.size:
                gcis.append(start + int(np.argmax(seg)))
    return np.asarray(gcis, dtype=int)


def select_gcis(gci_samples: np.ndarray, srh_centres: np.ndarray, srh_vuv: np.ndarray, n_samples: int) -> np.ndarray:
    """The G list of docs/covarep74.md §5: G = gci - 1 kept where the interpolated SRH voicing >= 0.5.

    Returns sorted unique ints, used downstream *as if* 1-based sample numbers (a reference quirk).
    """
    g = np.asarray(gci_samples, dtype=float) - 1.0
    g = g[np.isfinite(g) & (g >= 1)]
    vuv_at = np.nan_to_num(interp1_m(srh_centres, srh_vuv, g), nan=0.0)
    g = g[vuv_at >= 0.5]
    return np.unique(g.astype(int))
