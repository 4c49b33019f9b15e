"""Putting COVAREP streams on the 10 ms output grid (docs/covarep74.md §1.4 and §14).

Each stream has its own time stamps ("abscissa") in sample-number or second units; the output
grid is row k at sample number s_k = 80 + 160 k (about 5 ms + 10 ms k at 16 kHz). Values are
linearly interpolated, zero outside a stream's first/last stamp, and every NaN/inf becomes 0.
"""

from __future__ import annotations

import numpy as np

from cmbert_pipe.acoustic.covarep.mcompat import interp1_m

GRID_FIRST = 80  # sample number of row 0
GRID_HOP = 160  # samples between rows (10 ms at 16 kHz)
N_COLUMNS = 74


def n_rows(n_samples: int) -> int:
    """K = floor((L - 80) / 160) + 1 rows (0 when the signal is shorter than 80 samples)."""
    return max(0, (n_samples - GRID_FIRST) // GRID_HOP + 1)


def output_grid(n_samples: int) -> np.ndarray:
    """(K,) row positions s_k = 80 + 160 k as sample numbers."""
    return GRID_FIRST + GRID_HOP * np.arange(n_rows(n_samples), dtype=float)


def on_grid(abscissa, values, n_samples: int) -> np.ndarray:
    """Linear interpolation of a stream onto s_k; 0 outside the stream and for NaN/inf.

    ``values`` (N,) or (N, C) -> (K,) or (K, C).
    """
    abscissa = np.asarray(abscissa, dtype=float)
    values = np.asarray(values, dtype=float)
    if abscissa.size == 0:
        shape = (n_rows(n_samples),) + values.shape[1:]
        return np.zeros(shape)
    out = interp1_m(abscissa, values, output_grid(n_samples), default=0.0)
    return np.where(np.isfinite(out), out, 0.0)


def vuv_on_grid(abscissa, vuv, n_samples: int) -> np.ndarray:
    """The VUV column: interpolated voicing >= 0.5 -> 1, else 0 (a row is voiced if either
    neighbouring SRH frame is)."""
    return (on_grid(abscissa, vuv, n_samples) >= 0.5).astype(float)


def assemble(columns: dict[str, np.ndarray], names: tuple[str, ...], n_samples: int) -> np.ndarray:
    """(K, 74) float32 matrix in ``names`` order from per-column grid arrays; missing -> 0."""
    k = n_rows(n_samples)
    out = np.zeros((k, len(names)), dtype=np.float64)
    for i, name in enumerate(names):
        col = columns.get(name)
        if col is not None:
            out[:, i] = np.asarray(col, dtype=float)[:k]
    out[~np.isfinite(out)] = 0.0
    return out.astype(np.float32)
