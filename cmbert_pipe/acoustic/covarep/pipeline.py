"""COVAREP-74 assembly: every stage in order, each stream on the 10 ms grid (docs/covarep74.md §1, §14).

    polarity -> SRH (F0, VUV) -> SEDREAMS GCIs -> IAIF -> NAQ/QOQ/H1H2/PSP, MDQ, peakSlope
             -> sinusoidal frames -> Rd/Rd_conf, MCEP, HMPD;  creak from the residual + SRH

Usage::

    from cmbert_pipe.acoustic.covarep.pipeline import extract_covarep74
    frames = extract_covarep74(wave, 16000)  # (K, 74) float32, row k at 5 ms + 10 ms k

Deviation from the reference: on digital silence (SRH F0 = 1 Hz, docs/covarep74.md §16.1) the
sinusoidal frames below 20 Hz get no partials, so their Rd/Rd_conf are 0 and their HMPD phase
rows are the random fill (see ``sinusoidal.py``); everything else follows the reference.
"""

from __future__ import annotations

import logging
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from cmbert_pipe.acoustic.covarep import COVAREP74_COLUMNS
from cmbert_pipe.acoustic.covarep.creak import creak_posterior
from cmbert_pipe.acoustic.covarep.envelope import mcep_abscissa, mcep_frames
from cmbert_pipe.acoustic.covarep.gci import sedreams, select_gcis
from cmbert_pipe.acoustic.covarep.grid import assemble, n_rows, on_grid, vuv_on_grid
from cmbert_pipe.acoustic.covarep.hmpd import hmpd_features, hmpd_to_grid
from cmbert_pipe.acoustic.covarep.iaif import iaif_gci
from cmbert_pipe.acoustic.covarep.lpres import lpc_residual
from cmbert_pipe.acoustic.covarep.mcompat import OctaveRandom, iround
from cmbert_pipe.acoustic.covarep.polarity import detect_polarity
from cmbert_pipe.acoustic.covarep.rd import rd_msp
from cmbert_pipe.acoustic.covarep.sinusoidal import harmonic_peak_picking
from cmbert_pipe.acoustic.covarep.srh import f0_median_voiced, pitch_srh
from cmbert_pipe.acoustic.covarep.voicequality import vq_params
from cmbert_pipe.acoustic.covarep.wavelets import mdq, peak_slope
from cmbert_pipe.errors import FeatureError

log = logging.getLogger(__name__)

FS = 16000  # Hz: COVAREP's constants (1 Hz SRH bins, FFT sizes) assume 16 kHz
F0_MIN_HZ, F0_MAX_HZ = 50, 500
MIN_SAMPLES = 1600  # 100 ms: SRH needs one 100 ms frame
HMPD_MIN_FRAMES = 73  # HMPD's 25-tap filtfilt needs more than 72 frames (~0.82 s)
MCEP_CHUNK_FRAMES = 2000  # Stage-G frames per MCEP block (the 2049-bin spectra are 33 kB each)
DC_REMOVE_RATIO = 0.05  # |mean| / RMS above which the DC offset is subtracted
HMPD_RNG_SEED = 1  # Octave rand('state', 1) per file, as the reference CSVs were made

GLOTTAL_COLUMNS = ("NAQ", "QOQ", "H1H2", "PSP", "MDQ")
SPECTRAL_COLUMNS = {  # the groups computed from the sinusoidal frames, and creak
    "Rd": ("Rd", "Rd_conf"),
    "creak": ("creak",),
    "MCEP": tuple(f"MCEP_{i}" for i in range(25)),
    "HMPD": tuple(f"HMPDM_{i}" for i in range(25)) + tuple(f"HMPDD_{i}" for i in range(13)),
}


@dataclass
class Covarep74Result:
    """Output of :func:`extract`: the matrix plus per-stage streams and CPU seconds."""

    features: np.ndarray  # (K, 74) float32
    streams: dict = field(default_factory=dict)  # named intermediate streams (debugging, tests)
    cpu_s: dict = field(default_factory=dict)  # stage -> CPU seconds
    missing: tuple[str, ...] = ()  # column groups left at zero, with the reason logged


@contextmanager
def _timed(cpu_s: dict, stage: str):
    """Account CPU seconds to ``stage``; an unexpected failure becomes a FeatureError naming it."""
    t0 = time.process_time()
    try:
        yield
    except FeatureError:
        raise
    except (ArithmeticError, ValueError, IndexError, np.linalg.LinAlgError) as err:
        raise FeatureError(f"COVAREP stage '{stage}' failed: {type(err).__name__}: {err}") from err
    finally:
        cpu_s[stage] = cpu_s.get(stage, 0.0) + time.process_time() - t0


def _prepare(wave: np.ndarray, fs: int) -> np.ndarray:
    """Validate and convert to (L,) float64 at 16 kHz (first channel of a multi-channel array)."""
    x = np.asarray(wave)
    if x.ndim == 2:
        x = x[:, 0] if x.shape[0] >= x.shape[1] else x[0]
    if x.ndim != 1:
        raise FeatureError(f"expected a 1-D waveform, got shape {np.shape(wave)}")
    if not np.issubdtype(x.dtype, np.number):
        raise FeatureError(f"waveform has non-numeric dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.integer):  # PCM integers: full scale -> 1.0, as audioread does
        x = x.astype(np.float64) / float(2 ** (8 * x.dtype.itemsize - 1))
    x = np.asarray(x, dtype=np.float64)  # no copy when it already is float64; never modified
    bad = int(x.size - np.count_nonzero(np.isfinite(x)))
    if bad:
        raise FeatureError(f"waveform contains {bad} NaN/inf samples")
    if fs != FS:
        if fs <= 0:
            raise FeatureError(f"invalid sampling rate {fs}")
        from cmbert_pipe.audio import resample

        x = np.asarray(resample(x.astype(np.float32), int(fs), FS), dtype=np.float64)
    if x.size < MIN_SAMPLES:
        raise FeatureError(f"audio too short for COVAREP features ({x.size / FS * 1000:.0f} ms < 100 ms)")
    if not np.any(x != 0):
        raise FeatureError("audio is digital silence (all samples are zero)")
    mean = float(np.mean(x))
    rms = float(np.sqrt(np.einsum("i,i->", x, x) / x.size))
    if abs(mean) > DC_REMOVE_RATIO * rms:
        # A recording fault COVAREP does not handle (its LPC keeps the mean); smaller offsets are
        # left alone so that ordinary files stay bit-compatible with the reference.
        log.info("removing a DC offset of %.3g (%.0f%% of the RMS)", mean, 100 * abs(mean) / rms)
        peak = float(np.max(np.abs(x)))
        x = x - mean
        if float(np.max(np.abs(x))) <= 1e-6 * peak:
            raise FeatureError("audio is a constant (DC only): nothing to analyse")
    return x


def extract(wave: np.ndarray, fs: int = FS, keep_streams: bool = False) -> Covarep74Result:
    """Run every stage on a (N,) waveform at ``fs`` Hz -> :class:`Covarep74Result`.

    Raises :class:`FeatureError` for unusable input (NaN samples, < 100 ms, digital silence, no
    voiced SRH frame). Streams that cannot be computed on a valid file (e.g. HMPD on a clip
    shorter than ~0.82 s) are left at zero, logged and listed in ``missing``. NaN/inf inside a
    stream are part of COVAREP's conventions (they become 0 on the grid), so numpy's floating
    point warnings are silenced here.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _extract(wave, fs, keep_streams)


def _extract(wave: np.ndarray, fs: int, keep_streams: bool) -> Covarep74Result:
    cpu: dict = {}
    streams: dict = {}
    cols: dict[str, np.ndarray] = {}
    missing: list[str] = []
    with _timed(cpu, "prepare"):
        x = _prepare(wave, fs)
    n = x.size
    fs = FS

    with _timed(cpu, "residual"):
        res18_raw = lpc_residual(x, iround(0.025 * fs), iround(0.005 * fs), iround(fs / 1000) + 2)
    with _timed(cpu, "polarity"):
        polarity, _, _ = detect_polarity(x, fs, res18=res18_raw)
        if polarity == 0:
            polarity = 1  # the reference would zero the signal; keep it as is
        x = polarity * x
        res18 = polarity * res18_raw  # the residual is linear in x
    streams["polarity"] = polarity

    with _timed(cpu, "srh"):
        srh = pitch_srh(x, fs, F0_MIN_HZ, F0_MAX_HZ)
        cols["F0"] = on_grid(srh.centres, srh.f0_hz, n)
        cols["VUV"] = vuv_on_grid(srh.centres, srh.vuv, n)
        f0_med = f0_median_voiced(srh.f0_hz, srh.vuv)
    streams.update(srh_f0=srh.f0_hz, srh_vuv=srh.vuv, srh_time=srh.time_s, F0med=f0_med)
    if not np.isfinite(f0_med):
        raise FeatureError("no voiced speech found (SRH marked no frame as voiced)")

    with _timed(cpu, "gci"):
        gcis = select_gcis(sedreams(x, fs, f0_med, res18), srh.centres, srh.vuv, n)
    streams["GCI_samples"] = gcis
    if gcis.size >= 2:
        with _timed(cpu, "iaif"):
            g, dg = iaif_gci(x, fs, gcis)
        with _timed(cpu, "vq"):
            vq = vq_params(g, dg, fs, gcis)
            for name, values in (("NAQ", vq.naq), ("QOQ", vq.qoq), ("H1H2", vq.h1h2), ("PSP", vq.psp)):
                cols[name] = on_grid(vq.abscissa, values, n)
                streams[name] = np.column_stack((vq.abscissa / fs, values))
        with _timed(cpu, "mdq"):
            md_x, md_v = mdq(res18, fs, gcis)
            cols["MDQ"] = on_grid(md_x, md_v, n)
            streams["MDQ"] = np.column_stack((md_x / fs, md_v))
    else:
        log.warning("fewer than 2 voiced GCIs: NAQ, QOQ, H1H2, PSP and MDQ are zero")
        missing.append("glottal")
    with _timed(cpu, "peakslope"):
        ps_x, ps_v = peak_slope(x, fs)
        cols["peakSlope"] = on_grid(ps_x, ps_v, n)
        streams["PS"] = np.column_stack((ps_x / fs, ps_v))

    missing += _spectral_streams(x, fs, srh, res18, cols, streams, cpu)
    features = assemble(cols, COVAREP74_COLUMNS, n)
    return Covarep74Result(features=features, streams=streams if keep_streams else {}, cpu_s=cpu,
                           missing=tuple(missing))


def _spectral_streams(x, fs, srh, res18, cols, streams, cpu) -> list[str]:
    """Sinusoidal analysis -> Rd, MCEP, HMPD; creak. Returns the groups that stayed zero."""
    missing: list[str] = []
    n = x.size
    long_file = srh.centres.size > MCEP_CHUNK_FRAMES
    with _timed(cpu, "sinusoidal"):
        frames = harmonic_peak_picking(x, fs, srh.centres, srh.f0_hz, keep_spectrum=not long_file)
    streams.update(frames_t=frames.t_s, frames_f0=frames.f0_hz)
    if len(frames) == 0:
        log.warning("no sinusoidal-analysis frame fits in the signal: Rd, MCEP and HMPD are zero")
        return ["Rd", "MCEP", "HMPD", *_creak(x, fs, srh, res18, cols, cpu)]

    with _timed(cpu, "rd"):
        rds = rd_msp(frames, fs)
        rd_cols = on_grid(frames.centre, rds[:, 1:3], n)
        cols["Rd"], cols["Rd_conf"] = rd_cols[:, 0], rd_cols[:, 1]
    streams["rds"] = rds

    with _timed(cpu, "mcep"):
        if long_file:  # bounded memory: recompute the spectra block by block
            blocks = []
            for lo in range(0, srh.centres.size, MCEP_CHUNK_FRAMES):
                sl = slice(lo, lo + MCEP_CHUNK_FRAMES)
                fr = harmonic_peak_picking(x, fs, srh.centres[sl], srh.f0_hz[sl], partials=False)
                blocks.append(mcep_frames(fr, fs, 24))
            mcep = np.concatenate(blocks, axis=0)
        else:
            mcep = mcep_frames(frames, fs, 24)
        mc = on_grid(mcep_abscissa(mcep.shape[0], n), mcep, n)
        for q in range(25):
            cols[f"MCEP_{q}"] = mc[:, q]
    streams["MCEP_frames"] = mcep

    if len(frames) < HMPD_MIN_FRAMES:
        log.warning("clip shorter than ~0.82 s (%d analysis frames): HMPD columns are zero", len(frames))
        missing.append("HMPD")
    else:
        with _timed(cpu, "hmpd"):
            u_s, pdm, pdd = hmpd_features(frames, fs, OctaveRandom(HMPD_RNG_SEED))
            pdm_g, pdd_g = hmpd_to_grid(u_s, pdm, pdd, n, fs)
            for q in range(25):
                cols[f"HMPDM_{q}"] = pdm_g[:, q]
            for q in range(13):
                cols[f"HMPDD_{q}"] = pdd_g[:, q]
        streams.update(HMPDM_raw=pdm, HMPDD_raw=pdd, hmpd_t=u_s)
    missing += _creak(x, fs, srh, res18, cols, cpu)
    return missing


def _creak(x, fs, srh, res18, cols, cpu) -> list[str]:
    with _timed(cpu, "creak"):
        try:
            col = np.asarray(creak_posterior(x, fs, res18, srh.f0_hz, srh.vuv), dtype=float)
        except Exception as err:  # noqa: BLE001 - COVAREP's own try/catch: a zero creak column
            log.warning("creak detector failed (%s: %s): creak column is zero", type(err).__name__, err)
            return ["creak"]
    k = n_rows(x.size)
    cols["creak"] = col[:k] if col.size >= k else np.pad(col, (0, k - col.size))
    return []


def extract_covarep74(wave: np.ndarray, fs: int = FS) -> np.ndarray:
    """(N,) waveform at ``fs`` Hz -> (K, 74) float32 COVAREP-74 frames, NaN/inf -> 0.

    K = floor((L - 80) / 160) + 1 for the 16 kHz length L; row k sits at 5 ms + 10 ms k.
    """
    return extract(wave, fs).features
