"""Stage G of COVAREP-74: harmonic peak-picking sinusoidal analysis (docs/covarep74.md §9).

One analysis frame per SRH pitch frame: a 3-period Blackman window, a zero-phase 4096-point
DFT, partials picked at the spectral peaks nearest to the harmonics of the SRH f0, then forced
to a harmonic grid (McAulay & Quatieri 1986 peak picking, as used by Degottex & Erro 2014 for
HMPD). The frames feed Rd (``rd.py``), MCEP (``envelope.py``) and HMPD (``hmpd.py``).

Contract for the assembly (pipeline.py), stream by stream:

    frames = harmonic_peak_picking(x, fs, centres, f0s)
        x        polarity-corrected signal, float64, 16 kHz
        centres  SRH frame centres as 0-based sample indices, m_j = 800 + 160 j
                 (= mround(srh_time * fs)); f0s = srh_f0 (Hz, integers; 0 is replaced by 100)
        frames.t_s        (N,) frame times in s; frames.centre (N,) the 0-based centres m_j.
                          Frames whose window leaves the signal are dropped (§9.3, §16).
    rd_msp(frames, fs)              -> (N, 3) [t_s, Rd, Rd_conf]; abscissa for the grid:
                                       frames.centre (sample-number units, same as F0)
    mcep_frames(frames, fs)         -> (N, 25); abscissa mcep_abscissa(len(frames), L)
                                       = mround(linspace(1, L, N)) (sample numbers, §12.5)
    hmpd_features(frames, fs, rng)  -> (u_s, PDM (n, 25), PDD (n, 13)); abscissa u_s in
                                       seconds, to be put on tau_k = (79 + 160 k) / 16000 s
                                       with ``hmpd_to_grid`` (unwrap/interp/wrap for PDM)
    creak_posterior(x, fs, res18, srh_f0, srh_vuv)
                                    -> (K,) creak column already on the 10 ms grid (§11.2)

Deviation from the reference (docs/covarep74.md §16.1), limited to frames whose SRH f0 is below
``F0_FLOOR_HZ`` (20 Hz; in practice SRH's F0 = 1 Hz on digital silence): such a frame is kept or
dropped exactly as in the reference (its 48001-sample window, truncated to the first 4096
samples, gives the same spectrum S_j, so the frame list, MCEP and the MCEP time stamps are
unchanged), but it gets no harmonic partials (n_harm = 0) instead of ~8000 of them. Analysing
8000 partials made Rd cost ~3 s of CPU per second of silence and the padded (N, 8001) partial
arrays grow with the file length. Consequences: Rd/Rd_conf of those frames are NaN (grid rows
averaging them are 0) and their HMPD phase-distortion row is the random fill; the reference
puts meaningless values there. Files without such frames give bit-identical results.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from cmbert_pipe.acoustic.covarep.mcompat import mround, wrap

DFT_LEN = 4096  # bins of the sinusoidal-analysis DFT
CHUNK_FRAMES = 256  # frames per batched FFT (bounds memory for long recordings)
F0_FLOOR_HZ = 20.0  # frames with a lower SRH f0 get no partials (module docstring)


def v_findpeaks_q(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voicebox-semantics peaks with quadratic refinement (docs/covarep74.md §2.3, mode 'q').

    A peak is a plateau (maximal run of equal values, width >= 1) whose left neighbour is lower
    and whose right neighbour is lower; end points are never peaks. It is reported at the
    plateau's lower centre and refined by a parabola through its neighbours (a > 0), else
    shifted by half the plateau excess. Returns (1-based fractional positions, values).
    """
    x = np.asarray(x, dtype=float)
    n = x.size
    if n < 3:
        return np.empty(0), np.empty(0)
    change = np.flatnonzero(np.diff(x) != 0)  # last index of each plateau (except the last)
    starts = np.concatenate(([0], change + 1))
    ends = np.concatenate((change, [n - 1]))
    ok = (starts > 0) & (ends < n - 1)
    starts, ends = starts[ok], ends[ok]
    ok = (x[starts - 1] < x[starts]) & (x[ends + 1] < x[ends])
    starts, ends = starts[ok], ends[ok]
    k = starts + (ends - starts) // 2  # 0-based lower centre
    b = 0.5 * (x[k + 1] - x[k - 1])
    a = x[k] - b - x[k - 1]
    pos = k.astype(float) + 1.0
    val = x[k].copy()
    quad = a > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        val[quad] = x[k[quad]] + 0.25 * b[quad] ** 2 / a[quad]
        pos[quad] = pos[quad] + 0.5 * b[quad] / a[quad]
    flat = ~quad
    pos[flat] += ((ends - starts)[flat] / 2.0) - (ends - starts)[flat] // 2
    return pos, val


def _peaks_rows(logmag: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-wise :func:`v_findpeaks_q` on a (N, B) matrix: (row, 1-based position, value)."""
    x = logmag
    left = x[:, 1:-1] > x[:, :-2]
    right = x[:, 1:-1] > x[:, 2:]
    plateau_rows = np.flatnonzero(np.any(np.diff(x, axis=1) == 0, axis=1) | ~np.all(np.isfinite(x), axis=1))
    r, c = np.nonzero(left & right)
    keep = ~np.isin(r, plateau_rows)
    r, k = r[keep], c[keep] + 1  # 0-based column of the peak
    b = 0.5 * (x[r, k + 1] - x[r, k - 1])
    a = x[r, k] - b - x[r, k - 1]  # > 0 for a strict peak
    pos = k + 1.0 + 0.5 * b / a
    val = x[r, k] + 0.25 * b**2 / a
    rows, poss, vals = [r], [pos], [val]
    for row in plateau_rows:  # rare: exact ties or -inf (digital silence)
        with np.errstate(invalid="ignore"):
            p, v = v_findpeaks_q(x[row])
        rows.append(np.full(p.size, row))
        poss.append(p)
        vals.append(v)
    r = np.concatenate(rows)
    pos = np.concatenate(poss)
    val = np.concatenate(vals)
    order = np.lexsort((pos, r))
    return r[order], pos[order], val[order]


@dataclass(frozen=True)
class HarmonicFrames:
    """Stage-G frame records in columnar form (N frames, padded to Hmax+1 partials).

    t_s (N,) frame times; centre (N,) 0-based sample index of the window centre; f0_hz (N,)
    the SRH f0 (not the forced mf0); n_harm (N,) max_h per frame; freqs_hz, amps, phases
    (N, Hmax+1) partials with the DC entry at column 0 (NaN past n_harm); spectrum (N, 2049)
    the zero-phase half spectrum S_j.
    """

    t_s: np.ndarray
    centre: np.ndarray
    f0_hz: np.ndarray
    n_harm: np.ndarray
    freqs_hz: np.ndarray
    amps: np.ndarray
    phases: np.ndarray
    spectrum: np.ndarray

    def __len__(self) -> int:
        return int(self.t_s.size)


def harmonic_peak_picking(
    x: np.ndarray, fs: float, centres, f0s, dftlen: int = DFT_LEN, keep_spectrum: bool = True,
    partials: bool = True,
) -> HarmonicFrames:
    """Harmonic peak-picking sinusoidal analysis (docs/covarep74.md §9), batched over frames.

    x (L,) polarity-corrected float64 signal; centres (J,) 0-based window centres (SRH
    m_j); f0s (J,) SRH f0 in Hz. Returns the kept frames as :class:`HarmonicFrames`; with
    ``keep_spectrum=False`` the (N, 2049) spectra (16 kB per frame, needed only by MCEP) are
    not kept; with ``partials=False`` only the spectra are computed (the partial arrays are
    (N, 0)), which is all MCEP reads. Frames are independent, so a caller may also split
    ``centres`` into chunks.
    """
    x = np.asarray(x, dtype=float)
    L = x.size
    centres = mround(np.asarray(centres, dtype=float)).astype(np.int64)
    f0s = np.asarray(f0s, dtype=float).copy()
    f0s[f0s == 0] = 100.0
    half = mround(1.5 * fs / f0s).astype(np.int64)  # W = 2 h + 1
    keep = (centres - half >= 0) & (centres + half <= L - 1)
    centres, f0s, half = centres[keep], f0s[keep], half[keep]
    n = centres.size
    nbin = dftlen // 2 + 1
    max_h = mround((fs / 2 - f0s / 2) / f0s).astype(np.int64)
    max_h[f0s < F0_FLOOR_HZ] = 0  # digital silence: no partials (module docstring)
    hmax = (int(max_h.max()) if n else 0) if partials else -1  # -1: no partial columns
    spectrum = np.empty((n if keep_spectrum else 0, nbin), dtype=complex)
    freqs = np.full((n, hmax + 1), np.nan)
    amps = np.full((n, hmax + 1), np.nan)
    phases = np.full((n, hmax + 1), np.nan)
    for lo in range(0, n, CHUNK_FRAMES):
        sl = slice(lo, lo + CHUNK_FRAMES)
        spec = _zero_phase_spectra(x, centres[sl], half[sl], dftlen)
        if keep_spectrum:
            spectrum[sl] = spec
        if partials:
            _partials(spec, fs, f0s[sl], max_h[sl], dftlen, freqs[sl], amps[sl], phases[sl])
    return HarmonicFrames(centres / fs, centres, f0s, max_h, freqs, amps, phases, spectrum)


def _zero_phase_spectra(x, centres, half, dftlen):
    """(n, dftlen/2+1) DFTs of Blackman-windowed 3-period segments, phase-referenced to the
    window centre (§9.4)."""
    nbin = dftlen // 2 + 1
    out = np.empty((centres.size, nbin), dtype=complex)
    for h in np.unique(half):  # one window length per distinct f0
        sel = np.flatnonzero(half == h)
        win, shift = _window_and_shift(int(h), dftlen)
        n_used = win.size
        seg = x[centres[sel, None] - h + np.arange(n_used)[None, :]] * win  # (n, W)
        out[sel] = np.fft.rfft(seg, n=dftlen, axis=1) * shift
    return out


@functools.lru_cache(maxsize=512)
def _window_and_shift(h: int, dftlen: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised Blackman window of 2h+1 samples (its first ``dftlen`` when longer: f0 < 12 Hz,
    truncated by the FFT, §16.1) and the centre-referencing phase shift, cached per length."""
    nbin = dftlen // 2 + 1
    w_len = 2 * h + 1
    win = np.blackman(w_len)
    win = win / win.sum()
    shift = np.exp(2j * np.pi * np.arange(nbin) * h / dftlen)
    shift[-1] = (-1.0) ** h
    win = win[: min(w_len, dftlen)]
    win.flags.writeable = False
    shift.flags.writeable = False
    return win, shift


def _partials(spectrum, fs, f0s, max_h, dftlen, freqs, amps, phases):
    """Peak-picked, then force-harmonised partials of §9.5–9.6, written into the (n, Hmax+1)
    output views freqs, amps, phases (DC at column 0)."""
    n, nbin = spectrum.shape
    hmax = freqs.shape[1] - 1
    mag = np.abs(spectrum)
    with np.errstate(divide="ignore"):
        logmag = np.log(mag)
    step = dftlen * f0s / fs  # bins per harmonic
    hh = np.arange(1, hmax + 1)
    valid = hh[None, :] <= max_h[:, None]  # (n, hmax)
    b = step[:, None] * hh[None, :]
    b_idx = np.clip(mround(b), 0, nbin - 1).astype(np.int64)
    amp = np.take_along_axis(mag, b_idx, axis=1)
    # nearest quadratic-refined peak per harmonic (first on ties), within half a harmonic
    prow, ppos, pval = _peaks_rows(logmag)
    if ppos.size:
        span = float(nbin + 10)
        key = prow * span + ppos  # globally sorted
        rows = np.arange(n)[:, None]
        ins = np.searchsorted(key, rows * span + 1.0 + b)
        lo_i = np.clip(ins - 1, 0, key.size - 1)
        hi_i = np.clip(ins, 0, key.size - 1)
        lo_ok = (ins - 1 >= 0) & (prow[lo_i] == rows)
        hi_ok = (ins < key.size) & (prow[hi_i] == rows)
        d_lo = np.where(lo_ok, np.abs(ppos[lo_i] - (1.0 + b)), np.inf)
        d_hi = np.where(hi_ok, np.abs(ppos[hi_i] - (1.0 + b)), np.inf)
        use_lo = d_lo <= d_hi
        best = np.where(use_lo, lo_i, hi_i)
        dist = np.where(use_lo, d_lo, d_hi)
        take = dist < step[:, None] / 2
        b = np.where(take, ppos[best] - 1.0, b)
        amp = np.where(take, np.exp(pval[best]), amp)
    f_h = b * fs / dftlen
    # phase: linear interpolation of the unwrapped phase spectrum at f_h, then wrap. Only the
    # unwrapped step between the two neighbouring bins matters once the result is wrapped.
    pos = f_h * dftlen / fs  # fractional bin
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, nbin - 2)
    frac = pos - i0
    a0 = np.angle(np.take_along_axis(spectrum, i0, axis=1))  # only the bins read, not all 2049
    a1 = np.angle(np.take_along_axis(spectrum, i0 + 1, axis=1))
    step_ph = a1 - a0
    step_ph = np.mod(step_ph + np.pi, 2 * np.pi) - np.pi  # numpy/MATLAB unwrap rule
    step_ph = np.where((step_ph == -np.pi) & (a1 > a0), np.pi, step_ph)
    ph = wrap(a0 + frac * step_ph)
    ph[(pos < 0) | (pos > nbin - 1)] = np.nan
    freqs[:, 1:] = np.where(valid, f_h, np.nan)
    amps[:, 1:] = np.where(valid, amp, np.nan)
    phases[:, 1:] = np.where(valid, ph, np.nan)
    freqs[:, 0] = 0.0
    amps[:, 0] = mag[:, 0]
    phases[:, 0] = np.angle(spectrum[:, 0])
    # force harmonicity: mf0 = median of successive differences (DC included)
    # (frames without partials, max_h = 0, keep their SRH f0 and only the DC entry)
    mf0 = f0s.astype(float)
    has = max_h > 0
    if np.any(has):
        mf0[has] = np.nanmedian(np.diff(freqs[has], axis=1), axis=1)
    full = np.arange(hmax + 1)[None, :] <= max_h[:, None]
    freqs[:] = np.where(full, mf0[:, None] * np.arange(hmax + 1)[None, :], np.nan)
