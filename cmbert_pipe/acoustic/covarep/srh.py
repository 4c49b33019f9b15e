"""Pitch and voicing by Summation of Residual Harmonics (SRH).

Drugman & Alwan 2011, "Joint robust voicing detection and pitch estimation based on residual
harmonics" (Interspeech); docs/covarep74.md §4. The LP residual's amplitude spectrum (1 Hz bins) is
scored for each candidate f0 by the energy at its harmonics minus the energy between them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import scipy.fft

from cmbert_pipe.acoustic.covarep.lpres import lpc_residual
from cmbert_pipe.acoustic.covarep.mcompat import blackman_m, iround, mround
from cmbert_pipe.errors import FeatureError

N_HARMONICS = 5
_CHUNK_FRAMES = 64  # frames per batched rfft: a (64, 8001) complex block (8 MB) stays in cache


@dataclass(frozen=True)
class SrhResult:
    """SRH output per 10 ms frame j (arrays of shape (J,))."""

    f0_hz: np.ndarray  # integer-valued Hz (1 when no candidate scored positive)
    vuv: np.ndarray  # 0/1
    srh_value: np.ndarray  # the winning SRH score
    centres: np.ndarray  # frame centres as 1-based sample numbers m_j = 800 + 160 j (at 16 kHz)
    fs: int

    @property
    def time_s(self) -> np.ndarray:
        """Frame times ``m_j / fs`` as COVAREP stores them (srh_time)."""
        return self.centres / self.fs


def srh_scores(res: np.ndarray, fs: int, f0min: int, f0max: int) -> tuple[np.ndarray, np.ndarray]:
    """SRH score of every integer candidate in [f0min, f0max] for every 100 ms frame.

    (L,) residual -> (scores (J, f0max-f0min+1), centres (J,) 1-based sample numbers).
    """
    half = iround(0.1 * fs) // 2  # frame length round(0.1 fs) made even, minus 2
    frame_len = 2 * half - 2
    half_dur = frame_len // 2
    first_centre = half_dur + 1  # 1-based
    hop = iround(0.01 * fs)
    # The last centre must satisfy m <= L - halfDur (COVAREP's loop bound).
    last_ok = res.size - half_dur - first_centre
    n_frames = last_ok // hop + 1 if last_ok >= 0 else 0
    if n_frames <= 0:
        raise FeatureError(f"audio too short for SRH pitch tracking ({res.size / fs * 1000:.0f} ms < 100 ms)")
    centres = first_centre + hop * np.arange(n_frames)
    win = blackman_m(frame_len)
    n_bins = fs // 2
    cands = np.arange(f0min, f0max + 1)
    plus = [k * cands - 1 for k in range(1, N_HARMONICS + 1)]  # 1-based row r -> index r-1
    minus = [(mround((k + 0.5) * cands).astype(int) - 1) % n_bins for k in range(1, N_HARMONICS)]
    plus = [p % n_bins for p in plus]
    plus_idx = np.ascontiguousarray(np.array(plus, dtype=np.int64))  # (5, C)
    minus_idx = np.ascontiguousarray(np.array(minus, dtype=np.int64))  # (4, C)
    top = int(max(max(int(p.max()) for p in plus), max(int(m.max()) for m in minus))) + 1
    scores = np.empty((n_frames, cands.size))
    offsets = np.arange(frame_len) - half_dur  # sample numbers m-799..m+798 -> 0-based m-800+...
    for c0 in range(0, n_frames, _CHUNK_FRAMES):
        idx = centres[c0 : c0 + _CHUNK_FRAMES, None] - 1 + offsets
        frames = res[idx] * win
        frames -= frames.mean(axis=1, keepdims=True)
        full = scipy.fft.rfft(frames, n=fs, axis=1)  # (c, fs/2 + 1)
        spec = np.abs(full[:, :top])  # only the bins the scores read
        # sum of |X_k|^2 over k < fs/2 by Parseval (the abs of every bin cost as much as the FFT)
        x0, xn = full[:, 0].real, full[:, n_bins].real
        energy = x0 * x0 + 0.5 * (fs * np.einsum("ij,ij->i", frames, frames) - x0 * x0 - xn * xn)
        with np.errstate(invalid="ignore", divide="ignore"):
            spec /= np.sqrt(energy)[:, None]
        _harmonic_sums(spec, plus_idx, minus_idx, scores[c0 : c0 + spec.shape[0]])
    return scores, centres


@numba.njit(cache=True, nogil=True)
def _harmonic_sums(spec, plus, minus, out):  # pragma: no cover - compiled
    """out[r, c] = 0 + spec[r, plus[0, c]] + ... + spec[r, plus[4, c]] - spec[r, minus[0, c]] - ...
    (the harmonics, then the inter-harmonics, in the reference's order)."""
    for r in range(spec.shape[0]):
        for c in range(plus.shape[1]):
            acc = 0.0
            for k in range(plus.shape[0]):
                acc += spec[r, plus[k, c]]
            for k in range(minus.shape[0]):
                acc -= spec[r, minus[k, c]]
            out[r, c] = acc


def _pick(scores: np.ndarray, lo: int, hi: int, f0min_all: int) -> tuple[np.ndarray, np.ndarray]:
    """argmax over [0 x (lo-1), SRH(lo..hi)]: F0 = 1, value 0 when nothing scores positive."""
    sub = scores[:, lo - f0min_all : hi - f0min_all + 1]
    sub = np.where(np.isnan(sub), -np.inf, sub)
    best = np.argmax(sub, axis=1)
    val = sub[np.arange(sub.shape[0]), best]
    positive = val > 0
    return np.where(positive, lo + best, 1).astype(float), np.where(positive, val, 0.0)


def pitch_srh(x: np.ndarray, fs: int = 16000, f0min: int = 50, f0max: int = 500,
              res: np.ndarray | None = None) -> SrhResult:
    """COVAREP ``pitch_srh`` on (L,) speech: F0 (Hz), VUV, SRH value per 10 ms frame.

    Two passes: the second narrows the range to [F0med/2, 2 F0med] of the first pass. ``res``
    may pass a precomputed order round(0.75 fs/1000) residual.
    """
    if res is None:
        res = lpc_residual(x, iround(0.025 * fs), iround(0.005 * fs), iround(0.75 * fs / 1000))
    scores, centres = srh_scores(np.asarray(res, dtype=float), fs, f0min, f0max)
    lo, hi = f0min, f0max
    f0, val = _pick(scores, lo, hi, f0min)
    for _ in range(1):  # nbr_iter = 2: one refinement pass
        if not np.max(val) > 0.1:
            break
        est = float(np.median(f0[val > 0.1]))
        new_lo = max(lo, iround(0.5 * est))
        new_hi = min(hi, iround(2 * est))
        if (new_lo, new_hi) == (lo, hi):
            break
        lo, hi = new_lo, new_hi
        f0, val = _pick(scores, lo, hi, f0min)
    spread = float(np.std(val, ddof=1)) if val.size > 1 else 0.0
    threshold = 0.085 if spread > 0.05 else 0.07
    vuv = (val > threshold).astype(float)
    return SrhResult(f0_hz=f0, vuv=vuv, srh_value=val, centres=centres.astype(float), fs=fs)


def f0_median_voiced(f0: np.ndarray, vuv: np.ndarray) -> float:
    """Median F0 over voiced frames with 50 < f0 < 500 (NaN when there is none)."""
    sel = (vuv > 0) & (f0 > 50) & (f0 < 500)
    return float(np.median(f0[sel])) if np.any(sel) else float("nan")
