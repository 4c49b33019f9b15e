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
MAX_DURATION_S = 300.0  # s: the longest recording one utterance may be (option --max-duration)
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


# MP3 (ISO/IEC 11172-3, 13818-3 layer III). A layer III decoder outputs DECODER_DELAY samples
# of filterbank start-up, and the encoder put ENCODER_DELAY samples of its own before the
# signal; both precede sample 0 of the original. Decoders trim them only when the file carries
# LAME's gapless tag (in a first "Xing"/"Info" frame), which a low-bitrate or streamed file lacks.
MP3_DECODER_DELAY = 529  # samples (at the file's rate)
MP3_LAME_ENCODER_DELAY = 576  # samples: LAME's, the encoder behind most MP3 files
_MP3_BITRATES_KBPS = {
    1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),  # MPEG-1
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),  # MPEG-2 and 2.5
}
_MP3_RATES_HZ = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mp3_frame(data: bytes, pos: int) -> tuple[int, int, int] | None:
    """(frame length in bytes, samples per frame, side-info bytes) of a layer III frame header
    at ``pos``, or None if there is none."""
    if pos + 4 > len(data) or data[pos] != 0xFF or data[pos + 1] & 0xE0 != 0xE0:
        return None
    b1, b2, b3 = data[pos + 1], data[pos + 2], data[pos + 3]
    version, layer = (b1 >> 3) & 3, (b1 >> 1) & 3
    rate_idx, bitrate_idx = (b2 >> 2) & 3, b2 >> 4
    if version == 1 or layer != 1 or rate_idx == 3 or bitrate_idx in (0, 15):
        return None
    mpeg1 = version == 3
    rate = _MP3_RATES_HZ[version][rate_idx]
    kbps = _MP3_BITRATES_KBPS[1 if mpeg1 else 2][bitrate_idx]
    length = (144 if mpeg1 else 72) * kbps * 1000 // rate + ((b2 >> 1) & 1)
    mono = (b3 >> 6) == 3
    side = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
    crc = 0 if b1 & 1 else 2
    return length, 1152 if mpeg1 else 576, 4 + crc + side


def mp3_gapless(path: Path) -> tuple[int, int, int | None, int | None]:
    """Walk an MP3's frames: (audio frames, samples per frame, encoder delay, padding), the last
    two from LAME's tag when the file has one (else None). (0, 0, None, None) if not MP3."""
    data = path.read_bytes()
    pos = 0
    if data[:3] == b"ID3" and len(data) >= 10:  # ID3v2: a synch-safe size, maybe a footer
        size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
        pos = 10 + size + (10 if data[5] & 0x10 else 0)
    while pos < len(data) and _mp3_frame(data, pos) is None and pos < 1 << 16:
        pos += 1  # padding or junk before the first frame
    first = _mp3_frame(data, pos)
    if first is None:
        return 0, 0, None, None
    delay = padding = None
    n_frames = 0
    length, spf, side_end = first
    tag = pos + side_end
    if data[tag:tag + 4] in (b"Xing", b"Info"):  # an information frame: decoders output nothing
        flags = int.from_bytes(data[tag + 4:tag + 8], "big")
        ext = tag + 8 + 4 * bool(flags & 1) + 4 * bool(flags & 2) + 100 * bool(flags & 4) \
            + 4 * bool(flags & 8)
        enc = data[ext:ext + 4]
        if len(enc) == 4 and enc.isalpha():  # "LAME", "Lavf", "Lavc", ...: the LAME extension
            d = data[ext + 21:ext + 24]
            delay, padding = (d[0] << 4) | (d[1] >> 4), ((d[1] & 0x0F) << 8) | d[2]
        pos += length
    while (frame := _mp3_frame(data, pos)) is not None:
        n_frames += 1
        pos += frame[0]
    return n_frames, spf, delay, padding


def _trim_mp3_delay(path: Path, data: np.ndarray) -> np.ndarray:
    """Drop the encoder and decoder delay a decoder left at the start of an MP3 (and LAME's
    end padding), so that sample 0 is the first sample of the original signal.

    The decoder trimmed them itself exactly when it returned fewer samples than the frames
    hold; otherwise the delay is the tag's (LAME's default without a tag) plus the decoder's."""
    n_frames, spf, delay, padding = mp3_gapless(path)
    if n_frames == 0 or data.shape[0] < n_frames * spf:
        return data  # not parsed, or already gapless
    start = (MP3_LAME_ENCODER_DELAY if delay is None else delay) + MP3_DECODER_DELAY
    end = data.shape[0]
    if delay is not None and padding is not None:
        end = min(end, start + n_frames * spf - delay - padding)
    log.debug("%s: trimming %d samples of MP3 encoder+decoder delay", path, start)
    return data[start:end]


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
    if path.suffix.lower() == ".mp3":
        data = _trim_mp3_delay(path, data)
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


def too_long_reason(duration_s: float, max_duration_s: float) -> str:
    return (f"recording is {duration_s:.0f} s long, more than the {max_duration_s:.0f} s one "
            "utterance may be: split it into utterances (or raise --max-duration)")


def check_duration(path: str | Path, max_duration_s: float) -> None:
    """Refuse a recording longer than ``max_duration_s`` from its header, before decoding it
    (bounded time and memory); formats without a readable header are checked after decoding."""
    try:
        import soundfile as sf

        info = sf.info(str(path))
    except Exception:  # noqa: BLE001 - not for libsndfile: load_audio decodes and reports
        return
    if info.samplerate > 0 and info.frames / info.samplerate > max_duration_s:
        raise AudioError(too_long_reason(info.frames / info.samplerate, max_duration_s), path)
