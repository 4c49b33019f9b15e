"""Speech polarity by residual excitation skewness (RESKEW).

Drugman 2013, "Residual excitation skewness for automatic speech polarity detection"
(IEEE SPL 20(4)); docs/covarep74.md §3. The sign of skew(plain residual) - skew(residual whose
LPC was estimated on a high-passed copy) gives the polarity.
"""

from __future__ import annotations

import numpy as np

from cmbert_pipe.acoustic.covarep.lpres import lpc_residual, lpc_residual_two
from cmbert_pipe.acoustic.covarep.mcompat import filtfilt_m, iround

# Octave ellip(9, 3, 60, 480/8000, 'high') coefficients (docs/covarep74.md §2.5).
POLARITY_HP_B = np.array([
    0.57313844774461864, -5.1030023942091578, 20.248184171747752, -46.993013489984868,
    70.300890471909469, -70.300890471909483, 46.993013489984875, -20.248184171747752,
    5.1030023942091578, -0.57313844774461864,
])
POLARITY_HP_A = np.array([
    1.0, -7.9036360070715732, 27.769362485810255, -56.837245425111064, 74.532624083999394,
    -64.759998279379289, 37.137138344208203, -13.473295554973991, 2.7791063603199815,
    -0.24405141031816407,
])


def _skew(v: np.ndarray) -> float:
    """Skewness m3 / m2^1.5 (biased moments; only the sign of a difference is used)."""
    d = v - v.mean()
    d2 = d * d
    m2 = d2.mean()
    return float(np.mean(d2 * d) / m2**1.5) if m2 > 0 else 0.0


def detect_polarity(x: np.ndarray, fs: int = 16000, res18: np.ndarray | None = None) -> tuple[int, float, float]:
    """(L,) signal -> (polarity in {-1, 0, +1}, skew of plain residual, skew of two-signal residual).

    ``res18`` may pass a precomputed plain residual of ``x`` (Lw 25 ms, shift 5 ms, order fs/1000+2).
    """
    x = np.asarray(x, dtype=float)
    win, shift, order = iround(0.025 * fs), iround(0.005 * fs), iround(fs / 1000) + 2
    xh = filtfilt_m(POLARITY_HP_B, POLARITY_HP_A, x)
    r1 = np.nan_to_num(lpc_residual_two(x, xh, win, shift, order), nan=0.0)
    r2 = res18 if res18 is not None else lpc_residual(x, win, shift, order)
    r2 = np.nan_to_num(r2, nan=0.0)
    s2, s1 = _skew(r2), _skew(r1)
    return int(np.sign(s2 - s1)), s2, s1
