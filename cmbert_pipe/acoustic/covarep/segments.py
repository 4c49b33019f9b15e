"""Segmented COVAREP-74: a long recording in bounded memory, frames equal to a one-shot run.

The one-shot pipeline (:mod:`.pipeline`) keeps about ten signal-length float64 arrays alive, so
its peak grows ~140 MB per minute of audio. Here the recording is cut into cores of
``core_s`` seconds on the 10 ms grid, each analysed with ``margin_s`` of context on both sides,
and only the core's rows are kept. Every stage is local (its widest context is well under the
margin; docs/performance.md lists them) except a few whole-file quantities, which cheap first
passes over the same segments compute and the last pass injects:

==========================  ===================================================  =========
quantity                    one-shot                                             pass
==========================  ===================================================  =========
DC offset                   mean and RMS of the file                             0 (decode)
polarity                    sign of skew(res) - skew(res of high-passed LPC)     1
residual scale              max |LP residual| (orders 18 and 12)                 1
creak levels                loudest power / energy frame                         1
SRH range                   median F0 of the first SRH pass                      1
SRH voicing threshold       spread of all second-pass SRH values                 2
median F0 (SEDREAMS, creak) over the voiced frames                               2
SEDREAMS ratio              median position of strong residual samples           3
MCEP time stamps            ``linspace(1, L, M)`` over all M analysis frames     (from 2)
HMPD largest harmonic, fill Octave's random stream over (frame, harmonic) and    (from 2)
                            (bin, frame) positions of the whole file
==========================  ===================================================  =========

Passes 1 to 3 redo the LP residuals and the SRH scores (~25 % more CPU on a long file); HMPD's
random fill is drawn from the same Octave stream at each segment frame's whole-file position.
What can still differ from a one-shot run is rounding: IIR filters (SEDREAMS' and creak's
high/band-pass, the polarity high-pass) start from a segment edge, scaled copies normalise by a
different peak, and blocks of summation are cut elsewhere, so a value may move in its last bits
and, where COVAREP thresholds such a value (HMPD's PDD at exactly 1, an argmax tie), a row can
change more; tests/acoustic/test_covarep_segments.py bounds this and
``benchmarks/covarep_memory.py`` measures it on real speech.

Audio files at 16 kHz that libsndfile reads are decoded segment by segment (``soundfile``
seek + read); other files are decoded once to 16 kHz float32 (4 bytes per sample) first.

    >>> frames = extract_covarep74_segmented("long.wav")  # (K, 74) float32, as extract_covarep74
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmbert_pipe.acoustic.covarep import COVAREP74_COLUMNS
from cmbert_pipe.acoustic.covarep.creak import creak_posterior, level_maxima
from cmbert_pipe.acoustic.covarep.envelope import mcep_abscissa, mcep_frames
from cmbert_pipe.acoustic.covarep.gci import (
    sedreams,
    sedreams_cycles,
    sedreams_ratio_samples,
    select_gcis,
)
from cmbert_pipe.acoustic.covarep.grid import GRID_HOP, assemble, n_rows, on_grid, vuv_on_grid
from cmbert_pipe.acoustic.covarep.hmpd import HMPD_DFTLEN, hmpd_features, hmpd_to_grid
from cmbert_pipe.acoustic.covarep.iaif import iaif_gci
from cmbert_pipe.acoustic.covarep.lpres import lpc_residual, lpc_residual_two
from cmbert_pipe.acoustic.covarep.mcompat import OctaveRandom, filtfilt_m, iround, mround
from cmbert_pipe.acoustic.covarep.pipeline import (
    DC_REMOVE_RATIO,
    F0_MAX_HZ,
    F0_MIN_HZ,
    FS,
    HMPD_MIN_FRAMES,
    HMPD_RNG_SEED,
    MCEP_CHUNK_FRAMES,
    MIN_SAMPLES,
)
from cmbert_pipe.acoustic.covarep.polarity import POLARITY_HP_A, POLARITY_HP_B
from cmbert_pipe.acoustic.covarep.rd import rd_msp
from cmbert_pipe.acoustic.covarep.sinusoidal import F0_FLOOR_HZ, harmonic_peak_picking
from cmbert_pipe.acoustic.covarep.srh import SrhResult, _pick, f0_median_voiced, srh_scores
from cmbert_pipe.acoustic.covarep.voicequality import vq_params
from cmbert_pipe.acoustic.covarep.wavelets import mdq, peak_slope
from cmbert_pipe.errors import AudioError, FeatureError

log = logging.getLogger(__name__)

CORE_S = 60.0  # seconds of output rows per segment
MARGIN_S = 2.0  # context on each side: > every stage's reach (docs/performance.md)
MIN_MARGIN_S = 1.8  # the widest reach: an unvoiced frame's 3 s sinusoidal window (SRH F0 = 1 Hz)
LONG_FILE_S = 120.0  # extract_frames("covarep74") segments recordings longer than this
SRH_HALF = 799  # SRH frame j covers 1-based samples m_j - 799 .. m_j + 798, m_j = 800 + 160 j
SRH_FIRST = 800
STREAM_CHUNK = 1 << 20  # Octave draws generated per block while seeking in the stream


@dataclass(frozen=True)
class Segment:
    """Samples [start, stop) analysed; rows of [core_start, core_stop) kept (all multiples of
    160, so the local grids are the global ones shifted)."""

    start: int
    stop: int
    core_start: int
    core_stop: int


def plan_segments(n_samples: int, core_s: float = CORE_S, margin_s: float = MARGIN_S
                  ) -> list[Segment]:
    """Equal cores of about ``core_s`` covering [0, n), each with ``margin_s`` either side."""
    if not margin_s >= MIN_MARGIN_S:
        raise ValueError(f"margin_s {margin_s} is below {MIN_MARGIN_S} s, the widest context of a "
                         "COVAREP stage (a 1 Hz frame's sinusoidal window)")
    core = max(GRID_HOP, int(round(core_s * FS / GRID_HOP)) * GRID_HOP)
    margin = int(math.ceil(margin_s * FS / GRID_HOP)) * GRID_HOP
    n_seg = max(1, -(-n_samples // core))
    per = -(-n_samples // (n_seg * GRID_HOP)) * GRID_HOP  # equal cores, multiple of 160
    out = []
    for i in range(n_seg):
        c0 = i * per
        c1 = n_samples if i == n_seg - 1 else min(n_samples, (i + 1) * per)
        if c0 >= c1:
            break
        out.append(Segment(max(0, c0 - margin), min(n_samples, c1 + margin), c0, c1))
    return out


# -- audio sources -----------------------------------------------------------------------------
class _ArraySource:
    """A waveform already in memory (as the one-shot pipeline converts it)."""

    def __init__(self, wave: np.ndarray, fs: int):
        x = np.asarray(wave)
        if x.ndim == 2:
            x = x[:, 0] if x.shape[0] >= x.shape[1] else x[0]
        if fs != FS or x.ndim != 1 or not np.issubdtype(x.dtype, np.floating):
            x = _prepare_no_dc(wave, fs)
        self._x = x
        self.n = int(x.size)

    def read(self, a: int, b: int) -> np.ndarray:
        return np.asarray(self._x[a:b], dtype=np.float64)


class _FileSource:
    """A 16 kHz file read block by block: channels averaged in float32, as ``load_audio``."""

    def __init__(self, path: Path):
        import soundfile as sf

        self.path = path
        with sf.SoundFile(str(path)) as fh:
            self.n = int(fh.frames)
            self.samplerate = int(fh.samplerate)

    def read(self, a: int, b: int) -> np.ndarray:
        import soundfile as sf

        with sf.SoundFile(str(self.path)) as fh:
            fh.seek(a)
            data = fh.read(b - a, dtype="float32", always_2d=True)
        wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
        return np.asarray(wave, dtype=np.float64)


def _prepare_no_dc(wave, fs) -> np.ndarray:
    """The one-shot conversion (channel, PCM scale, resampling) without the DC step."""
    x = np.asarray(wave)
    if x.ndim == 2:
        x = x[:, 0] if x.shape[0] >= x.shape[1] else x[0]
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float64) / float(2 ** (8 * x.dtype.itemsize - 1))
    if fs != FS:
        from cmbert_pipe.audio import resample

        x = np.asarray(resample(np.asarray(x, np.float32), int(fs), FS), dtype=np.float64)
    return np.asarray(x, dtype=np.float64)


def open_source(path: str | Path):
    """A lazily decoded source for a 16 kHz file libsndfile reads; otherwise the whole file
    decoded by ``load_audio`` (16 kHz float32)."""
    path = Path(path)
    if path.suffix.lower() != ".mp3":
        try:
            src = _FileSource(path)
            if src.samplerate == FS and src.n > 0:
                return src
        except Exception:  # noqa: BLE001 - not for libsndfile: load_audio decodes and reports
            pass
    from cmbert_pipe.audio import load_audio

    return _ArraySource(load_audio(path), FS)


# -- whole-file passes -----------------------------------------------------------------------
def _dc_offset(src, segments: list[Segment]) -> float:
    """Pass 0 over the cores: the checks of the one-shot ``_prepare`` and the DC offset to
    subtract (0 unless it exceeds DC_REMOVE_RATIO of the RMS)."""
    n = src.n
    if n < MIN_SAMPLES:
        raise FeatureError(f"audio too short for COVAREP features ({n / FS * 1000:.0f} ms < 100 ms)")
    total = sq = 0.0
    peak = 0.0
    for seg in segments:
        x = src.read(seg.core_start, seg.core_stop)
        bad = int(x.size - np.count_nonzero(np.isfinite(x)))
        if bad:
            raise FeatureError(f"waveform contains {bad} NaN/inf samples")
        total += float(np.sum(x))
        sq += float(np.einsum("i,i->", x, x))
        peak = max(peak, float(np.max(np.abs(x))) if x.size else 0.0)
    if peak == 0:
        raise FeatureError("audio is digital silence (all samples are zero)")
    mean, rms = total / n, math.sqrt(sq / n)
    if abs(mean) <= DC_REMOVE_RATIO * rms:
        return 0.0
    log.info("removing a DC offset of %.3g (%.0f%% of the RMS)", mean, 100 * abs(mean) / rms)
    return mean


@dataclass
class _FileLevels:
    polarity: int
    peak18: float
    peak12: float
    creak_p_max: float
    creak_e_max: float
    srh_lo: int
    srh_hi: int


class _Moments:
    """Running sums for a skewness over many blocks."""

    def __init__(self):
        self.n = 0
        self.s = np.zeros(3)

    def add(self, v: np.ndarray) -> None:
        self.n += v.size
        self.s += (v.sum(), (v * v).sum(), (v * v * v).sum())

    def skew(self) -> float:
        if self.n == 0:
            return 0.0
        m1, m2r, m3r = self.s / self.n
        m2 = m2r - m1 * m1
        m3 = m3r - 3 * m1 * m2r + 2 * m1**3
        return float(m3 / m2**1.5) if m2 > 0 else 0.0


def _srh_frames(n: int) -> int:
    last_ok = n - SRH_HALF - SRH_FIRST
    return last_ok // GRID_HOP + 1 if last_ok >= 0 else 0


def _core_frames(seg: Segment, n_local: int) -> tuple[np.ndarray, np.ndarray]:
    """(local, global) SRH frame indices whose centre lies in the segment's core."""
    j0 = seg.start // GRID_HOP
    local = np.arange(_srh_frames(n_local))
    centre0 = SRH_FIRST - 1 + seg.start + GRID_HOP * local  # 0-based sample of the centre
    keep = (centre0 >= seg.core_start) & (centre0 < seg.core_stop)
    return local[keep], local[keep] + j0


def _pass1(src, segments, dc) -> tuple[_FileLevels, np.ndarray, np.ndarray]:
    """Polarity, residual peaks, creak levels, first-pass SRH picks (on the raw residual)."""
    m_plain, m_two = _Moments(), _Moments()
    peak18 = peak12 = 0.0
    p_max = e_max = -np.inf
    n_frames = _srh_frames(src.n)
    f0_1, val_1 = np.zeros(n_frames), np.zeros(n_frames)
    win, shift = iround(0.025 * FS), iround(0.005 * FS)
    for seg in segments:
        x = src.read(seg.start, seg.stop) - dc
        lo, hi = seg.core_start - seg.start, seg.core_stop - seg.start
        r18 = lpc_residual(x, win, shift, iround(FS / 1000) + 2, peak=1.0)
        core18 = r18[lo:hi]
        peak18 = max(peak18, float(np.nanmax(np.abs(core18))) if core18.size else 0.0)
        m_plain.add(np.nan_to_num(core18, nan=0.0))
        xh = filtfilt_m(POLARITY_HP_B, POLARITY_HP_A, x)
        r_two = lpc_residual_two(x, xh, win, shift, iround(FS / 1000) + 2, peak=1.0)
        m_two.add(np.nan_to_num(r_two[lo:hi], nan=0.0))
        del r18, xh, r_two
        r12 = lpc_residual(x, win, shift, iround(0.75 * FS / 1000), peak=1.0)
        peak12 = max(peak12, float(np.nanmax(np.abs(r12[lo:hi]))) if hi > lo else 0.0)
        loc, glob = _core_frames(seg, x.size)
        if loc.size:
            scores, _ = srh_scores(r12, FS, F0_MIN_HZ, F0_MAX_HZ)
            f0, val = _pick(scores[loc], F0_MIN_HZ, F0_MAX_HZ, F0_MIN_HZ)
            f0_1[glob], val_1[glob] = f0, val
        del r12
        p, e = level_maxima(x, FS, lo, hi)
        p_max, e_max = max(p_max, p), max(e_max, e)
    polarity = int(np.sign(m_plain.skew() - m_two.skew())) or 1
    lo_hz, hi_hz = F0_MIN_HZ, F0_MAX_HZ
    if np.max(val_1, initial=0.0) > 0.1:  # pitch_srh's one refinement pass
        est = float(np.median(f0_1[val_1 > 0.1]))
        lo_hz, hi_hz = max(lo_hz, iround(0.5 * est)), min(hi_hz, iround(2 * est))
    return _FileLevels(polarity, peak18, peak12, p_max, e_max, lo_hz, hi_hz), f0_1, val_1


def _pass2(src, segments, dc, lv: _FileLevels) -> tuple[np.ndarray, np.ndarray]:
    """Second-pass SRH picks over [srh_lo, srh_hi] on the file-normalised residual."""
    n_frames = _srh_frames(src.n)
    f0, val = np.zeros(n_frames), np.zeros(n_frames)
    for seg in segments:
        x = src.read(seg.start, seg.stop) - dc
        loc, glob = _core_frames(seg, x.size)
        if not loc.size:
            continue
        r12 = lpc_residual(x, iround(0.025 * FS), iround(0.005 * FS), iround(0.75 * FS / 1000),
                           peak=lv.peak12)
        scores, _ = srh_scores(r12, FS, F0_MIN_HZ, F0_MAX_HZ)
        f0[glob], val[glob] = _pick(scores[loc], lv.srh_lo, lv.srh_hi, F0_MIN_HZ)
    return f0, val


def _residual18(x_unsigned: np.ndarray, lv: _FileLevels) -> np.ndarray:
    r = lpc_residual(x_unsigned, iround(0.025 * FS), iround(0.005 * FS), iround(FS / 1000) + 2,
                     peak=lv.peak18)
    return lv.polarity * r


def _pass4(src, segments, dc, lv: _FileLevels, f0_med: float, ratio: float, srh) -> np.ndarray:
    """The file's selected GCI list (G values as sample numbers), segment by segment."""
    f0_all, vuv_all = srh
    parts = []
    for seg in segments:
        xu = src.read(seg.start, seg.stop) - dc
        n = xu.size
        j0, jn = seg.start // GRID_HOP, _srh_frames(n)
        centres = (SRH_FIRST + GRID_HOP * np.arange(jn)).astype(float)
        g = select_gcis(sedreams(lv.polarity * xu, FS, f0_med, _residual18(xu, lv), ratio=ratio,
                                 res_peak=1.0), centres, vuv_all[j0 : j0 + jn], n) + seg.start
        parts.append(g[(g >= seg.core_start) & (g < seg.core_stop)])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=int)


def _glottal(src, seg: Segment, dc: float, lv: _FileLevels, gci: np.ndarray, n_seg: int,
             cols: dict) -> None:
    """NAQ, QOQ, H1H2, PSP, MDQ for the rows of ``seg``'s core. A GCI-synchronous IAIF frame
    spans G - T0 .. G + T0, and after a pause T0 is the pause: the frames that touch the cycles
    around the core are analysed on a window that holds all of them, each with its T0 from the
    file's list."""
    n = src.n
    t0_all = np.diff(gci, prepend=2 * gci[0] - gci[1])
    k0 = max(0, int(np.searchsorted(gci, seg.core_start)) - 2)
    k1 = min(gci.size - 1, int(np.searchsorted(gci, seg.core_stop)) + 1)
    first = max(0, k0 - 1)  # its predecessor: the first cycle's flow starts there
    sel = np.arange(first, k1 + 1)
    lo = int(np.min(gci[sel] - 2 * t0_all[sel])) - 1  # H1-H2 reads 1.5 T0 before its GCI
    hi = int(gci[k1]) + 2 * int(t0_all[k1]) + 2 * GRID_HOP
    starts = np.maximum(gci - t0_all, 1)
    stops = np.minimum(gci + t0_all, n)
    frames = np.flatnonzero((starts <= hi) & (stops >= lo))
    frames = np.union1d(frames, np.arange(first, k1 + 1))
    pad = int(math.ceil(0.2 * FS))  # wavelet (+-1000 samples) and LPC (400) context
    w0 = max(0, (min(lo, int(starts[frames].min())) - 1 - pad) // GRID_HOP * GRID_HOP)
    w1 = min(n, max(hi, int(stops[frames].max())) + pad)
    xu = src.read(w0, w1) - dc
    x = lv.polarity * xu
    res18 = _residual18(xu, lv)
    del xu
    g, dg = iaif_gci(x, FS, gci[frames] - w0, t0=t0_all[frames])
    vq = vq_params(g, dg, FS, gci[sel] - w0)
    keep = slice(k0 - first, None)  # the first of ``sel`` only gave its cycle's start
    shift = w0 - seg.start
    for name, values in (("NAQ", vq.naq), ("QOQ", vq.qoq), ("H1H2", vq.h1h2), ("PSP", vq.psp)):
        cols[name] = on_grid(vq.abscissa[keep] + shift, values[keep], n_seg)
    del g, dg
    md_x, md_v = mdq(res18, FS, gci[sel] - w0)
    cols["MDQ"] = on_grid(md_x[keep] + shift, md_v[keep], n_seg)


def _pass3(src, segments, dc, lv: _FileLevels, f0_med: float) -> float:
    """SEDREAMS' ratio: median relative position of the strong residual samples."""
    parts = []
    for seg in segments:
        xu = src.read(seg.start, seg.stop) - dc
        res = np.nan_to_num(_residual18(xu, lv), nan=0.0)
        minis, maxis = sedreams_cycles(lv.polarity * xu, FS, f0_med)
        if not minis.size:
            continue
        posis, rel = sedreams_ratio_samples(res, minis, maxis)
        inside = (posis - 1 >= seg.core_start - seg.start) & (posis - 1 < seg.core_stop - seg.start)
        parts.append(rel[inside])
    rel = np.concatenate(parts) if parts else np.zeros(0)
    return float(np.median(rel)) if rel.size else 0.0


# -- the analysis frames of the whole file ------------------------------------------------------
@dataclass
class _FileFrames:
    """The sinusoidal-analysis frames one-shot extraction would keep (harmonic_peak_picking's
    rule), their harmonic counts, and what HMPD's fill needs."""

    centres: np.ndarray  # (M,) sample numbers (SRH m_j) of the kept frames
    f0: np.ndarray  # (M,) their f0 as HMPD reads it
    hmax: int
    mcep_x: np.ndarray  # (M,) MCEP time stamps (sample numbers)
    nan_bin: np.ndarray  # (M,) first HMPD bin whose harmonic position is past the table: filled


def _file_frames(n: int, srh_f0: np.ndarray) -> _FileFrames:
    centres = mround(SRH_FIRST + GRID_HOP * np.arange(srh_f0.size, dtype=float)).astype(np.int64)
    f0s = srh_f0.astype(float).copy()
    f0s[f0s == 0] = 100.0
    half = mround(1.5 * FS / f0s).astype(np.int64)
    keep = (centres - half >= 0) & (centres + half <= n - 1)
    centres, f0s = centres[keep], f0s[keep]
    max_h = mround((FS / 2 - f0s / 2) / f0s).astype(np.int64)
    max_h[f0s < F0_FLOOR_HZ] = 0
    hmax = int(max_h.max()) if max_h.size else 0
    nbin = HMPD_DFTLEN // 2 + 1
    fb = np.arange(nbin) * FS / HMPD_DFTLEN  # as hmpd_features computes it
    nan_bin = np.full(f0s.size, nbin, dtype=np.int64)
    for lo in range(0, f0s.size, 4096):  # a bin is filled where floor(fb / f0) > hmax
        past = np.floor(fb[None, :] / f0s[lo : lo + 4096, None]) >= hmax + 1
        nan_bin[lo : lo + 4096] = np.where(past.any(axis=1), np.argmax(past, axis=1), nbin)
    return _FileFrames(centres, f0s, hmax, mcep_abscissa(centres.size, n), nan_bin)


class _FillStream:
    """``uniform(rows, cols)`` serving, in order, draws taken beforehand from the Octave stream."""

    def __init__(self, values: np.ndarray):
        self._v = values
        self._at = 0

    def uniform(self, rows: int, cols: int) -> np.ndarray:
        k = rows * cols
        out = self._v[self._at : self._at + k]
        if out.size != k:
            raise FeatureError("HMPD asked for more random fill than the file-wide plan holds")
        self._at += k
        return out.reshape(cols, rows).T.copy()


def _octave_draws(positions: np.ndarray) -> np.ndarray:
    """Draws at ascending ``positions`` of Octave's stream after rand('state', HMPD_RNG_SEED)."""
    rng = OctaveRandom(HMPD_RNG_SEED)
    out = np.empty(positions.size)
    start, i = 0, 0
    while i < positions.size:
        block = rng.uniform(STREAM_CHUNK, 1)[:, 0]
        j = int(np.searchsorted(positions, start + STREAM_CHUNK, side="left"))
        out[i:j] = block[positions[i:j] - start]
        i, start = j, start + STREAM_CHUNK
    return out


def _hmpd_fill(ff: _FileFrames, g: np.ndarray) -> _FillStream:
    """The fill draws of the frames with whole-file indices ``g`` (ascending), in the order
    hmpd_features consumes them: the (frame, harmonic) table column by column, then the filled
    (frame, bin) positions bin by bin; each at its one-shot position in the stream."""
    m = ff.centres.size
    cols = np.arange(ff.hmax + 1, dtype=np.int64)
    first = (cols[:, None] * m + g[None, :]).ravel()  # column-major over (frame, harmonic)
    nbin = HMPD_DFTLEN // 2 + 1
    counts = np.bincount(np.minimum(ff.nan_bin, nbin), minlength=nbin + 1)[:nbin]
    filled_per_bin = np.cumsum(counts)  # frames filled at bin b (nan_bin <= b)
    bin_base = m * (ff.hmax + 1) + np.concatenate(([0], np.cumsum(filled_per_bin)[:-1]))
    before = np.cumsum(np.bincount(ff.nan_bin[: g[0]], minlength=nbin + 1)[:nbin])  # frames < g0
    span = ff.nan_bin[g[0] : g[-1] + 1]  # every file frame from g0 to the last (incl. dropped)
    filled = span[:, None] <= np.arange(nbin)[None, :]  # (S, nbin)
    below = np.cumsum(filled, axis=0) - filled  # filled frames in [g0, g) per bin
    mask = filled[g - g[0]]  # (n_local, nbin)
    bins, rows = np.nonzero(mask.T)  # bin-major, frames ascending: hmpd's order
    second = bin_base[bins] + before[bins] + below[g[rows] - g[0], bins]
    positions = np.concatenate((first, second))
    return _FillStream(_octave_draws(positions))


def _pad_frames(frames, width: int):
    """Partials arrays widened to ``width`` columns with NaN (the one-shot table's width)."""
    extra = width - frames.freqs_hz.shape[1]
    if extra <= 0:
        return frames
    pad = ((0, 0), (0, extra))
    return dataclasses.replace(
        frames, freqs_hz=np.pad(frames.freqs_hz, pad, constant_values=np.nan),
        amps=np.pad(frames.amps, pad, constant_values=np.nan),
        phases=np.pad(frames.phases, pad, constant_values=np.nan))


# -- the last pass ---------------------------------------------------------------------------
def _segment_rows(src, seg: Segment, dc: float, lv: _FileLevels, srh: tuple, gci: np.ndarray,
                  ff: _FileFrames, creak_levels: tuple) -> np.ndarray:
    """(rows of the core, 74) float32: every stage on the segment, whole-file values injected."""
    xu = src.read(seg.start, seg.stop) - dc
    n = xu.size
    x = lv.polarity * xu
    res18 = _residual18(xu, lv)
    del xu
    j0 = seg.start // GRID_HOP
    jn = _srh_frames(n)
    f0_all, vuv_all, val_all = srh
    local = SrhResult(f0_hz=f0_all[j0 : j0 + jn], vuv=vuv_all[j0 : j0 + jn],
                      srh_value=val_all[j0 : j0 + jn],
                      centres=(SRH_FIRST + GRID_HOP * np.arange(jn)).astype(float), fs=FS)
    cols: dict[str, np.ndarray] = {
        "F0": on_grid(local.centres, local.f0_hz, n),
        "VUV": vuv_on_grid(local.centres, local.vuv, n),
    }
    if gci.size >= 2:
        _glottal(src, seg, dc, lv, gci, n, cols)
    ps_x, ps_v = peak_slope(x, FS)
    cols["peakSlope"] = on_grid(ps_x, ps_v, n)

    frames = harmonic_peak_picking(x, FS, local.centres, local.f0_hz, keep_spectrum=False)
    if len(frames):
        g_idx = np.searchsorted(ff.centres, mround(frames.centre).astype(np.int64) + seg.start)
        rds = rd_msp(frames, FS)
        rd_cols = on_grid(frames.centre, rds[:, 1:3], n)
        cols["Rd"], cols["Rd_conf"] = rd_cols[:, 0], rd_cols[:, 1]
        blocks = []
        for lo in range(0, local.centres.size, MCEP_CHUNK_FRAMES):
            sl = slice(lo, lo + MCEP_CHUNK_FRAMES)
            fr = harmonic_peak_picking(x, FS, local.centres[sl], local.f0_hz[sl], keep_spectrum=True)
            if len(fr):
                blocks.append(mcep_frames(fr, FS, 24))
        mcep = np.concatenate(blocks, axis=0)
        mc = on_grid(ff.mcep_x[g_idx] - seg.start, mcep, n)
        for q in range(25):
            cols[f"MCEP_{q}"] = mc[:, q]
        if len(frames) >= HMPD_MIN_FRAMES and ff.centres.size >= HMPD_MIN_FRAMES:
            u_s, pdm, pdd = hmpd_features(_pad_frames(frames, ff.hmax + 1), FS,
                                          _hmpd_fill(ff, g_idx), hmax=ff.hmax)
            pdm_g, pdd_g = hmpd_to_grid(u_s, pdm, pdd, n, FS)
            for q in range(25):
                cols[f"HMPDM_{q}"] = pdm_g[:, q]
            for q in range(13):
                cols[f"HMPDD_{q}"] = pdd_g[:, q]
        del frames
    try:
        col = np.asarray(creak_posterior(x, FS, res18, local.f0_hz, local.vuv, creak_levels),
                         dtype=float)
        k = n_rows(n)
        cols["creak"] = col[:k] if col.size >= k else np.pad(col, (0, k - col.size))
    except Exception as err:  # noqa: BLE001 - COVAREP's own try/catch: a zero creak column
        log.warning("creak detector failed on %.0f-%.0f s (%s): zeros there",
                    seg.start / FS, seg.stop / FS, err)
    out = assemble(cols, COVAREP74_COLUMNS, n)
    r0 = (seg.core_start - seg.start) // GRID_HOP
    r1 = r0 + (n_rows(seg.core_stop) - n_rows(seg.core_start))
    return out[r0:r1]


def extract_segmented(src, core_s: float = CORE_S, margin_s: float = MARGIN_S) -> np.ndarray:
    """(K, 74) float32 COVAREP-74 frames of a source (``open_source`` or an array source),
    computed segment by segment; K and the row times as :func:`extract_covarep74`."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            return _extract_segmented(src, core_s, margin_s)
        except FeatureError:
            raise
        except (ArithmeticError, ValueError, IndexError, np.linalg.LinAlgError) as err:
            raise FeatureError(f"segmented COVAREP extraction failed: {type(err).__name__}: {err}"
                               ) from err


def _extract_segmented(src, core_s: float, margin_s: float) -> np.ndarray:
    n = src.n
    segments = plan_segments(n, core_s, margin_s)
    dc = _dc_offset(src, segments)
    lv, _, _ = _pass1(src, segments, dc)
    f0, val = _pass2(src, segments, dc, lv)
    spread = float(np.std(val, ddof=1)) if val.size > 1 else 0.0
    vuv = (val > (0.085 if spread > 0.05 else 0.07)).astype(float)
    f0_med = f0_median_voiced(f0, vuv)
    if not np.isfinite(f0_med):
        raise FeatureError("no voiced speech found (SRH marked no frame as voiced)")
    f0v = f0[vuv > 0]
    creak_levels = (float(np.median(f0v)) if f0v.size else 100.0, lv.creak_p_max, lv.creak_e_max)
    ratio = _pass3(src, segments, dc, lv, f0_med)
    gci = _pass4(src, segments, dc, lv, f0_med, ratio, (f0, vuv))
    if gci.size < 2:
        log.warning("fewer than 2 voiced GCIs: NAQ, QOQ, H1H2, PSP and MDQ are zero")
    ff = _file_frames(n, f0)
    out = np.zeros((n_rows(n), len(COVAREP74_COLUMNS)), dtype=np.float32)
    for seg in segments:
        rows = _segment_rows(src, seg, dc, lv, (f0, vuv, val), gci, ff, creak_levels)
        r0 = n_rows(seg.core_start)
        out[r0 : r0 + rows.shape[0]] = rows
    return out


def extract_covarep74_segmented(audio, fs: int = FS, core_s: float = CORE_S,
                                margin_s: float = MARGIN_S) -> np.ndarray:
    """A file path (decoded lazily when it can be) or a (N,) waveform at ``fs`` -> (K, 74)
    float32 frames, as :func:`~.pipeline.extract_covarep74` computes them in one piece."""
    if isinstance(audio, (str, Path)):
        path = Path(audio)
        if not path.is_file():
            raise AudioError("audio file not found", path)
        src = open_source(path)
    else:
        src = _ArraySource(audio, fs)
    return extract_segmented(src, core_s, margin_s)
