"""Audio decoding: any format soundfile/librosa can read -> 16 kHz mono float32, once.

    >>> from cmbert_pipe.audio import load_audio
    >>> wave = load_audio("clip.flac")          # (N,) float32 at SAMPLE_RATE
"""

from __future__ import annotations

import logging
import struct
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from cmbert_pipe.errors import AudioError
from cmbert_pipe.schema import SAMPLE_RATE

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".aif", ".aiff", ".m4a", ".wma")
SILENCE_PEAK = 1e-4  # full scale: a file whose peak stays below this is treated as silent
MIN_DURATION_S = 0.05  # s: shorter than this there is nothing to align or measure


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """Decode to (frames, channels) float32 at the file's own rate."""
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        return data, int(sr)
    except Exception as sf_error:  # libsndfile does not know the format: try librosa/audioread
        try:
            import librosa  # ~1 s to import: only for the formats libsndfile cannot read

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data, sr = librosa.load(str(path), sr=None, mono=False)
        except Exception as lr_error:
            raise AudioError(
                f"cannot decode audio ({type(sf_error).__name__}: {sf_error}; "
                f"librosa: {type(lr_error).__name__}: {lr_error})",
                path,
            ) from None
        data = np.atleast_2d(np.asarray(data, dtype=np.float32))
        return data.T if data.shape[0] < data.shape[1] else data, int(sr)


def resample(wave: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling (soxr, very-high quality); identity when the rates agree."""
    if sr_in == sr_out:
        return wave
    return soxr.resample(wave, sr_in, sr_out, quality="VHQ").astype(np.float32, copy=False)


def _wav_truncation(path: Path) -> str | None:
    """For a RIFF/WAVE file, why it is truncated (its ``data`` chunk claims more bytes than
    the file holds), else None. libsndfile silently reads what is there, so check here."""
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        size = path.stat().st_size
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            chunk_id, chunk_size = struct.unpack("<4sI", fh.read(8))
            if chunk_id == b"data":
                if chunk_size in (0, 0xFFFFFFFF):  # streamed WAV: size left unset
                    return None
                held = size - pos - 8
                if held < chunk_size:
                    return (
                        f"audio file is truncated: its header announces {chunk_size} bytes "
                        f"of samples, the file holds {held}"
                    )
                return None
            pos += 8 + chunk_size + (chunk_size & 1)
    return None


def load_audio(path: str | Path, *, allow_silent: bool = False) -> np.ndarray:
    """Read ``path`` and return a (N,) float32 waveform at :data:`SAMPLE_RATE`, mono.

    Channels are averaged. Raises :class:`AudioError` (naming the file) for a missing,
    undecodable, empty, too short, non-finite or (unless ``allow_silent``) silent file.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError("audio file not found", path)
    if path.stat().st_size == 0:
        raise AudioError("audio file is empty (0 bytes)", path)
    truncated = _wav_truncation(path)
    if truncated:
        raise AudioError(truncated, path)
    data, sr = _decode(path)
    if data.size == 0 or data.shape[0] == 0:
        raise AudioError("audio has no samples", path)
    if not np.all(np.isfinite(data)):
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise AudioError(f"audio contains {bad} NaN/inf samples", path)
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    wave = resample(np.ascontiguousarray(wave, dtype=np.float32), sr)
    duration_s = wave.shape[0] / SAMPLE_RATE
    if duration_s < MIN_DURATION_S:
        raise AudioError(f"audio is too short ({duration_s * 1000:.1f} ms)", path)
    peak = float(np.max(np.abs(wave)))
    if not allow_silent and peak < SILENCE_PEAK:
        raise AudioError(f"audio is silent (peak {peak:.2e} of full scale)", path)
    return wave
