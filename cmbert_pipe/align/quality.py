"""Evidence about an alignment that does not come from the search: where the speech is, whether a
transcript can fit it, the normalised quality score, and placement of words by phone counts.

    >>> segments = speech_segments(wave)                 # ((start_s, end_s), ...) of voiced audio
    >>> check_fits(n_phones=20, duration_s=3.5, speech_s=sum(e - s for s, e in segments))
    >>> spans = place_by_phones([3, 2, 5], segments)      # one (start_s, end_s) per word
    >>> quality_from_fit(-1.2)                            # 0.55
    >>> fill_unplaced([(0.5, 0.9), None, (1.6, 2.0)], 0.0, 2.5)   # the gap shared out

Quality: PocketSphinx scores every frame relative to its best-scoring senone, so the mean log
score per frame of the words on the path (``fit``, nats, <= 0) is a log-likelihood ratio
against the best free phone sequence. ``quality = exp(fit / FIT_SCALE_NATS)`` maps it to (0, 1]:
1 when the transcript's phones are the best explanation of every frame. A word the search could
not place counts 0. The methods, in the order they are tried, are in :data:`METHODS`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from cmbert_pipe.schema import SAMPLE_RATE

#: How an utterance was aligned, in the order the backend tries them.
METHODS = (
    "viterbi",        # default beams, word pass (+ phone pass)
    "viterbi-wide",   # wider beams, more Gaussians, also on the frame grid shifted by 5 ms
    "garbage",        # the words with optional pauses and a garbage (noise) model between them
    "anchored",       # words the word pass found, the others placed between them by phone counts
    "proportional",   # all words over the voiced region by phone counts (no acoustic anchor)
)
FIT_SCALE_NATS = 2.0  # nats per frame: quality exp(-1) at a mean fit of -2 nats per frame
ENERGY_FRAME_S = 0.025  # s: energy window of the speech detector
ENERGY_HOP_S = 0.010  # s
ENERGY_BLOCK_FRAMES = 3000  # frames per block (30 s of audio, ~10 MB per array)
SPEECH_BAND_HZ = (150.0, 4000.0)  # Hz: the band whose energy the speech detector follows
SPEECH_ABOVE_FLOOR_DB = 6.0  # dB above the quiet floor (10th percentile) at least counts as voiced
SPEECH_RANGE_SHARE = 0.3  # ... and this share of the floor-to-peak (99th percentile) range
MIN_DYNAMIC_RANGE_DB = 12.0  # dB between quiet and loud frames; less: no speech in the file
MIN_GAP_S = 0.15  # s: shorter quiet stretches inside speech are bridged
MIN_RUN_S = 0.05  # s: shorter loud blips are dropped
F0_MIN_HZ, F0_MAX_HZ = 60, 1000  # pitch search range of median_f0_hz
MIN_PHONE_S = 0.030  # s: 3 HMM states of 10 ms, the shortest a phone can be aligned
MAX_PHONE_S = 0.5  # s: slowest plausible mean phone duration (drawn-out, emotional speech)
MAX_SPEECH_SLACK_S = 3.0  # s of unscripted speech (fillers, laughter) allowed beyond that


def frame_energy_db(wave: np.ndarray) -> np.ndarray:
    """(n_frames,) log energy in dB, in the speech band (:data:`SPEECH_BAND_HZ`: mains hum and
    rumble below it do not count), of Hann-windowed 25 ms frames every 10 ms of a 16 kHz wave."""
    win, hop = round(ENERGY_FRAME_S * SAMPLE_RATE), round(ENERGY_HOP_S * SAMPLE_RATE)
    if wave.shape[0] < win:
        wave = np.pad(wave, (0, win - wave.shape[0]))
    n = 1 + (wave.shape[0] - win) // hop
    hz = np.fft.rfftfreq(512, 1.0 / SAMPLE_RATE)
    band = (hz >= SPEECH_BAND_HZ[0]) & (hz <= SPEECH_BAND_HZ[1])
    window = np.hanning(win)[None, :]
    out = np.empty(n)
    for b in range(0, n, ENERGY_BLOCK_FRAMES):  # in blocks: bounded memory on long recordings
        m = min(ENERGY_BLOCK_FRAMES, n - b)
        idx = np.arange(win)[None, :] + hop * (b + np.arange(m))[:, None]  # (m, win)
        power = np.abs(np.fft.rfft(wave[idx].astype(np.float64) * window, 512, axis=1)) ** 2
        out[b:b + m] = 10.0 * np.log10(power[:, band].sum(axis=1) / win + 1e-12)  # (m,)
    return out


def speech_segments(wave: np.ndarray) -> tuple[tuple[float, float], ...]:
    """Voiced stretches ``((start_s, end_s), ...)`` of a 16 kHz wave: frames louder than the
    quiet floor by :data:`SPEECH_ABOVE_FLOOR_DB` and by :data:`SPEECH_RANGE_SHARE` of the
    floor-to-peak range (noisy recordings have little range), short gaps bridged, short blips
    dropped. Empty when the file has no loud-vs-quiet contrast (silence, steady noise, hum)."""
    db = frame_energy_db(wave)
    floor, peak = np.percentile(db, 10), np.percentile(db, 99)
    if peak - floor < MIN_DYNAMIC_RANGE_DB:
        return ()
    voiced = db > floor + max(SPEECH_ABOVE_FLOOR_DB, SPEECH_RANGE_SHARE * (peak - floor))
    runs = _runs(voiced)
    merged: list[list[int]] = []
    for start, end in runs:
        if merged and (start - merged[-1][1]) * ENERGY_HOP_S < MIN_GAP_S:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    return tuple(
        (round(s * ENERGY_HOP_S, 3), round(e * ENERGY_HOP_S + ENERGY_FRAME_S - ENERGY_HOP_S, 3))
        for s, e in merged
        if (e - s) * ENERGY_HOP_S >= MIN_RUN_S
    )


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index pairs of the True runs of a boolean (n,) array."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def median_f0_hz(wave: np.ndarray, segments: Sequence[tuple[float, float]]) -> float:
    """Median fundamental frequency (Hz) of the periodic 40 ms frames (every 10 ms) inside the
    voiced ``segments``: the lag of the normalised autocorrelation peak between 60 and 1000 Hz
    (frames whose peak is below 0.5 are not periodic and are left out); 0.0 when none is."""
    win, hop = round(0.040 * SAMPLE_RATE), round(ENERGY_HOP_S * SAMPLE_RATE)
    min_lag, max_lag = SAMPLE_RATE // F0_MAX_HZ, SAMPLE_RATE // F0_MIN_HZ
    f0s: list[np.ndarray] = []
    for start_s, end_s in segments:
        x = wave[round(start_s * SAMPLE_RATE):round(end_s * SAMPLE_RATE)].astype(np.float64)
        if x.shape[0] < win:
            continue
        n = 1 + (x.shape[0] - win) // hop
        frames = x[np.arange(win)[None, :] + hop * np.arange(n)[:, None]]  # (n, win)
        frames -= frames.mean(axis=1, keepdims=True)
        spec = np.fft.rfft(frames, 2 * win, axis=1)
        ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, : max_lag + 1]  # (n, max_lag + 1)
        ac /= np.maximum(ac[:, :1], 1e-12)
        lag = min_lag + np.argmax(ac[:, min_lag:], axis=1)  # (n,)
        peak = ac[np.arange(n), lag]
        f0s.append(SAMPLE_RATE / lag[peak > 0.5])
    f0 = np.concatenate(f0s) if f0s else np.zeros(0)
    return float(np.median(f0)) if f0.size else 0.0


def check_fits(n_phones: int, duration_s: float, speech_s: float) -> str | None:
    """Why a transcript of ``n_phones`` phones cannot be what is said in audio of
    ``duration_s`` holding ``speech_s`` of voiced sound, or None when it can."""
    if speech_s <= 0.0:
        return ("no speech found in the audio: its loudness hardly varies (silence, steady "
                "noise, a held tone or music)")
    need_s = n_phones * MIN_PHONE_S
    if need_s > duration_s:
        return (f"the transcript is too long for the audio: its {n_phones} phones need at "
                f"least {need_s:.1f} s, the audio lasts {duration_s:.1f} s")
    most_s = n_phones * MAX_PHONE_S + MAX_SPEECH_SLACK_S
    if speech_s > most_s:
        return (f"the audio holds {speech_s:.0f} s of speech, far more than the transcript's "
                f"{n_phones} phones can take (at most {most_s:.0f} s): the transcript is "
                "incomplete or belongs to another recording")
    return None


def quality_from_fit(fit_nats_per_frame: float) -> float:
    """Normalised quality in (0, 1] of a mean per-frame log score (see the module docstring)."""
    return round(math.exp(min(fit_nats_per_frame, 0.0) / FIT_SCALE_NATS), 4)


def place_by_phones(
    n_phones: Sequence[int], segments: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    """One ``(start_s, end_s)`` per word: the words laid end to end over the voiced
    ``segments`` (pauses between segments skipped), each taking time in proportion to its
    phone count. ``segments`` must be non-empty and in order."""
    weights = np.maximum(np.asarray(n_phones, dtype=np.float64), 1.0)
    lengths = np.array([e - s for s, e in segments], dtype=np.float64)
    total = float(lengths.sum())
    if total <= 0:
        raise ValueError("no voiced time to place words in")
    cum_s = np.concatenate([[0.0], np.cumsum(weights)]) / weights.sum() * total  # (n_words + 1,)
    seg_start_cum = np.concatenate([[0.0], np.cumsum(lengths)])  # (n_segments + 1,)

    def to_time(voiced_s: float) -> float:
        k = int(np.clip(np.searchsorted(seg_start_cum, voiced_s, side="right") - 1, 0,
                        len(segments) - 1))
        return segments[k][0] + min(voiced_s - seg_start_cum[k], lengths[k])

    spans = []
    for i in range(len(weights)):
        start = to_time(cum_s[i])
        end = to_time(cum_s[i + 1] - 1e-9) if i + 1 < len(weights) else segments[-1][1]
        spans.append((round(start, 3), round(max(end, start), 3)))
    return spans


def clip_segments(segments: Sequence[tuple[float, float]], start_s: float,
                  end_s: float) -> list[tuple[float, float]]:
    """The parts of ``segments`` inside ``[start_s, end_s]``; the whole span when none is."""
    out = [(max(s, start_s), min(e, end_s)) for s, e in segments if e > start_s and s < end_s]
    out = [(s, e) for s, e in out if e > s]
    return out or [(start_s, max(end_s, start_s + 1e-3))]


def fill_unplaced(
    spans: list[tuple[float, float] | None],
    first_s: float,
    last_s: float,
    n_phones: Sequence[int] | None = None,
    segments: Sequence[tuple[float, float]] | None = None,
) -> list[tuple[float, float]]:
    """``spans`` with every ``None`` given a place: each run of unplaced words shares the time
    between the end of the placed word before it and the start of the placed word after it
    (``first_s`` / ``last_s`` at the ends). With ``segments`` (voiced stretches) and
    ``n_phones`` (one count per word) a run is laid over the voiced parts of that time by
    phone counts (:func:`place_by_phones`); without, it is split evenly."""
    out = list(spans)
    i = 0
    while i < len(out):
        if out[i] is not None:
            i += 1
            continue
        j = i
        while j < len(out) and out[j] is None:
            j += 1
        nxt = out[j][0] if j < len(out) else last_s
        lo = out[i - 1][1] if i > 0 else min(first_s, nxt)
        hi = max(nxt, lo)
        if segments is not None and n_phones is not None:
            out[i:j] = place_by_phones(n_phones[i:j], clip_segments(segments, lo, hi))
        else:
            step = (hi - lo) / (j - i)
            out[i:j] = [(lo + k * step, lo + (k + 1) * step) for k in range(j - i)]
        i = j
    return out  # type: ignore[return-value]


def passes(quality: float | None, min_quality: float | None) -> bool:
    """Whether an alignment of ``quality`` passes ``--min-align-quality``; an unknown quality
    (an aligner that gives none, e.g. dropped-in MFA TextGrids) passes only when no minimum
    is asked for."""
    return min_quality is None or (quality is not None and quality >= min_quality)


def describe_methods(methods: Sequence[str]) -> str:
    """``"viterbi 692, anchored 2, proportional 5"``: how many alignments each method made,
    in the order of :data:`METHODS` (others, e.g. ``unknown``, last)."""
    counts: dict[str, int] = {}
    for m in methods:
        counts[m or "unknown"] = counts.get(m or "unknown", 0) + 1
    order = {m: i for i, m in enumerate(METHODS)}
    return ", ".join(f"{m} {n}" for m, n in sorted(counts.items(),
                                                   key=lambda kv: (order.get(kv[0], 99), kv[0])))
