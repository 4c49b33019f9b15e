"""Forced alignment with PocketSphinx 5 (en-us acoustic model + CMUdict from its wheel), offline.

    >>> aligner = PocketsphinxAligner()
    >>> ali = aligner.align(Utterance("a", Path("a.wav"), "Hello world"))
    >>> [(w.word, w.start_s, w.end_s) for w in ali.words]

How: the transcript is normalised (:mod:`.normalize`); every word gets a dictionary entry
(CMUdict, or the offline neural G2P for the rest, parts of hyphenated or numeric words
concatenated; bracketed annotations get the model's ``+SPN+`` noise phone). PocketSphinx then
runs its word-level Viterbi alignment against the word sequence, with optional silences and
fillers between words, and a second, state-level pass that yields phone boundaries
(the ``set_align_text`` / ``set_alignment`` API). When the beam search loses the path (speech
the transcript does not mention, e.g. an unwritten "uh") it retries with a wide search, then
both searches once more on the frame grid shifted by half a hop (5 ms); if all fail, or the
acoustic fit of the path is very poor, the transcript does not match the audio.

Times: PocketSphinx analyses 25.6 ms windows every 10 ms; a boundary before frame ``k`` is
reported at ``k * 10 ms + boundary_offset_s``. The offset is a setting because the best value
is empirical: against MFA's reference TextGrids, 0 gives the best 10 and 20 ms shares and
mean error among -10, -5, 0, +5, +10 ms (``benchmarks/align_accuracy.py --offsets ...``).
Likewise ``silprob``: PocketSphinx's default 0.005 makes pauses costly, so words swallow the
silences around them; 1.0 lets the optional silence between words take them (20 ms agreement 62.3 % -> 68.6 %, 50 ms 77.9 % -> 84.4 %;
0.05, 0.2 and 0.5 lie between). Measured and not kept (README, align section): averaging with
an alignment on the grid shifted by 5 ms (MFA's reference boundaries lie on the same 10 ms
grid as ours, and the shifted search sometimes takes another path: 68.6 % -> 65.6 %), fixed
moves of word edges next to pauses, and energy or spectral-change snapping of the boundaries
(no gain on a held-out file).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cmbert_pipe.align.base import Aligner, register
from cmbert_pipe.align.g2p import g2p
from cmbert_pipe.align.normalize import NORMALIZER_VERSION, SpokenWord, spoken_words
from cmbert_pipe.audio import load_audio
from cmbert_pipe.errors import AlignmentError, AudioError, ConfigError, TranscriptError
from cmbert_pipe.schema import SAMPLE_RATE, Alignment, PhoneInterval, Utterance, WordInterval

log = logging.getLogger(__name__)

PS_FRAME_S = 0.010  # s: PocketSphinx frame hop at its default 100 frames/s
NOISE_WORD = "zzspnzz"  # dictionary entry for bracketed annotations (noise pronunciations)
NOISE_PHONE = "+SPN+"
# a bracketed annotation may be speech-like noise (+SPN+) or other noise (+NSN+), short or long
NOISE_PRONUNCIATIONS = ("+SPN+", "+NSN+", "+SPN+ +SPN+", "+NSN+ +NSN+", "+NSN+ +SPN+")
FILLER_PHONES = ("SIL", "+SPN+", "+NSN+")  # silence and noise: empty intervals in the phones tier


@dataclass(frozen=True)
class PocketsphinxConfig:
    """Everything that changes a PocketSphinx alignment (all of it goes into cache keys)."""

    beam: float = 1e-48  # state beam of the first try (PocketSphinx default)
    retry_beam: float = 1e-100  # wider beam for the single retry when the first try fails
    retry_topn: int = 16  # Gaussians scored per frame in the retry (default 4: coarser)
    retry_shift_s: float = 0.005  # s: last resort, both searches on the frame grid shifted so
    #   (half a hop): the search is fragile enough that a 5 ms shift can decide success
    silprob: float = 1.0  # optional-silence insertion probability (PocketSphinx default 0.005)
    boundary_offset_s: float = 0.0  # s added to every frame boundary (0 measured best, README)
    max_duration_s: float = 300.0  # s: longer recordings are refused (split them first)
    min_fit_per_frame: float = -4.0  # mean log acoustic score per speech frame; below: mismatch
    max_oov_fraction: float = 0.5  # more words than this missing from CMUdict -> not English
    min_words_for_oov_check: int = 4  # the OOV check needs at least this many words

    def __post_init__(self) -> None:
        if not self.max_duration_s > 0:
            raise ConfigError(f"max_duration_s must be positive, got {self.max_duration_s}")


def _version() -> str:
    from importlib.metadata import version

    return version("pocketsphinx")


@functools.lru_cache(maxsize=1)
def _cmudict() -> dict[str, tuple[str, ...]]:
    """CMUdict of the pocketsphinx wheel: word -> pronunciations, in the file's variant order."""
    import pocketsphinx

    path = Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"
    entries: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            name, _, phones = line.strip().partition(" ")
            if phones:
                entries.setdefault(_base(name), []).append(phones.strip())
    return {word: tuple(prons) for word, prons in entries.items()}


def _decoder(config: PocketsphinxConfig, wide: bool, lexicon: dict[str, tuple[str, ...]]):
    """A fresh decoder that knows exactly ``lexicon`` (key -> pronunciations) and no LM.

    A new decoder per utterance makes each alignment independent of what the process aligned
    before (a reused PocketSphinx decoder carries state from one utterance to the next, which
    changed word boundaries and whether the phone pass succeeded). With a dictionary of the
    utterance's own words and no language model, creating one costs ~10 ms.

    The wide one (the retry) scores more Gaussians per frame, keeps every HMM and prunes with
    far wider beams: slower, but it finds a path where the default search loses it.
    """
    from pocketsphinx import Decoder

    if wide:
        b = config.retry_beam
        options = {"beam": b, "pbeam": b, "wbeam": b * 1e20, "topn": config.retry_topn,
                   "maxhmmpf": -1}
    else:
        options = {"beam": config.beam, "pbeam": config.beam}
    lines = []
    for key, prons in sorted(lexicon.items()):
        lines += [f"{key if i == 0 else f'{key}({i + 1})'} {p}" for i, p in enumerate(prons)]
    fd, dict_path = tempfile.mkstemp(prefix="cmbert-ps-", suffix=".dict")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        return Decoder(loglevel="FATAL", silprob=config.silprob, lm=None, dict=dict_path,
                       **options)
    finally:
        os.unlink(dict_path)


def _pcm16(wave: np.ndarray) -> bytes:
    return (np.clip(wave, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def _base(name: str) -> str:
    """Dictionary word without its variant suffix: ``the(2)`` -> ``the``."""
    return name.split("(", 1)[0] if name.endswith(")") else name


@register("pocketsphinx")
class PocketsphinxAligner(Aligner):
    """PocketSphinx forced aligner (see the module docstring)."""

    def __init__(self, **options: Any):
        self.config = PocketsphinxConfig(**options)

    def settings(self) -> dict[str, Any]:
        return {
            "backend": "pocketsphinx",
            "version": _version(),
            "model": "en-us (pocketsphinx wheel) + cmudict-en-us",
            "decoder": "fresh per utterance, its own words only, no LM",
            "g2p": "g2p-en checkpoint20 (numpy GRU)",
            "normalizer": NORMALIZER_VERSION,
            **asdict(self.config),
        }

    # -- dictionary ---------------------------------------------------------------------------
    def _lexicon(
        self, words: list[SpokenWord], source: str | None
    ) -> tuple[list[str], dict[str, tuple[str, ...]], int]:
        """(dictionary key per word, key -> pronunciations, number of parts that needed G2P).

        A word in CMUdict keeps all its variants; other words (and hyphenated or numeric
        words spoken part by part) get one pronunciation from the parts' CMUdict entries and
        the offline G2P for the rest; bracketed annotations map to the noise word.
        """
        cmudict = _cmudict()
        keys: list[str] = []
        lexicon: dict[str, tuple[str, ...]] = {}
        n_oov = 0
        for word in words:
            if word.noise:
                keys.append(NOISE_WORD)
                lexicon[NOISE_WORD] = NOISE_PRONUNCIATIONS
                continue
            if len(word.parts) == 1 and word.parts[0] in cmudict:
                keys.append(word.parts[0])
                lexicon[word.parts[0]] = cmudict[word.parts[0]]
                continue
            phones: list[str] = []
            for part in word.parts:
                if part in cmudict:
                    phones += cmudict[part][0].split()
                    continue
                guess = g2p(part)
                if not guess:
                    raise TranscriptError(f"cannot pronounce word {word.text!r}", source)
                phones += guess
                n_oov += 1
            key = "_".join(word.parts)
            keys.append(key)
            lexicon[key] = (" ".join(phones),)
        return keys, lexicon, n_oov

    # -- alignment ----------------------------------------------------------------------------
    def _run(self, decoder, keys: list[str], pcm: bytes):
        """Word pass then phone pass -> (word segments, phone segments or None, fit), segments
        as (name, start_frame, end_frame); None when no path runs through all the words.

        ``fit`` is the mean log acoustic score per frame inside words. PocketSphinx scores each
        frame relative to its best-scoring senone, so this is a log-likelihood ratio against
        the best free phone sequence: near 0 when the words fit the sound, very negative when
        the transcript forces phones that are not there.
        """
        try:
            decoder.set_align_text(" ".join(keys))
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
            if decoder.hyp() is None:
                return None
            segments = list(decoder.seg())
            words = [(s.word, s.start_frame, s.end_frame + 1) for s in segments]
            spoken = [s for s in segments
                      if not s.word.startswith(("<", "[")) and _base(s.word) != NOISE_WORD]
            frames = sum(s.end_frame + 1 - s.start_frame for s in spoken)
            fit = sum(math.log(max(s.ascore, 1e-300)) for s in spoken) / max(frames, 1)
        except RuntimeError as e:
            log.debug("pocketsphinx word pass: %s", e)
            return None
        if _n_matched(words, keys) != len(keys):  # a word lost on the way: no usable path
            return None
        try:
            decoder.set_alignment()
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
            ali = decoder.get_alignment()
            state_words = [(w.name, w.start, w.start + w.duration) for w in ali.words()]
            phones = [(p.name, p.start, p.start + p.duration) for p in ali.phones()]
        except (RuntimeError, AttributeError) as e:  # the state-level pass lost its path
            log.debug("pocketsphinx phone pass: %s", e)
            return words, None, fit
        if _n_matched(state_words, keys) != len(keys):
            return words, None, fit
        return state_words, phones, fit

    def align(self, utterance: Utterance, wave: np.ndarray | None = None) -> Alignment:
        cfg = self.config
        source = str(utterance.transcript_path or utterance.audio)
        words = spoken_words(utterance.transcript, source=source)
        if wave is None:
            _check_duration(utterance.audio, cfg.max_duration_s)
            wave = load_audio(utterance.audio)
        duration_s = wave.shape[0] / SAMPLE_RATE
        if duration_s > cfg.max_duration_s:
            raise AudioError(_too_long(duration_s, cfg.max_duration_s), utterance.audio)

        keys, lexicon, n_oov = self._lexicon(words, source)
        n_lexical = sum(1 for w in words if not w.noise)
        if n_lexical >= cfg.min_words_for_oov_check and n_oov > cfg.max_oov_fraction * n_lexical:
            raise TranscriptError(
                f"{n_oov} of {n_lexical} words are not in the English dictionary: "
                "the transcript does not look English (the en-us aligner only knows English)",
                source,
            )
        ali, shift_s = None, 0.0
        for shift_s in (0.0, cfg.retry_shift_s) if cfg.retry_shift_s > 0 else (0.0,):
            pcm = _pcm16(wave[round(shift_s * SAMPLE_RATE) :])
            ali = self._run(_decoder(cfg, False, lexicon), keys, pcm)
            if ali is None or ali[1] is None:
                log.info("%s: retrying with the wide search", utterance.id)
                retry = self._run(_decoder(cfg, True, lexicon), keys, pcm)
                if retry is not None and (ali is None or retry[1] is not None):
                    ali = retry
            if ali is not None:
                break
            log.info("%s: retrying on a frame grid shifted by %g s", utterance.id,
                     cfg.retry_shift_s)
        if ali is None:
            raise AlignmentError(
                "the transcript does not match the audio (no alignment of all "
                f"{len(words)} words found, even with a wide search on two frame grids)",
                utterance.audio,
            )
        if ali[2] < cfg.min_fit_per_frame:
            raise AlignmentError(
                f"the transcript does not match the audio (acoustic fit {ali[2]:.2f} per frame, "
                f"below {cfg.min_fit_per_frame:.2f})",
                utterance.audio,
            )
        return self._to_alignment(utterance, words, keys, ali, duration_s, shift_s)

    def _to_alignment(self, utterance, words, keys, ali, duration_s, shift_s=0.0) -> Alignment:
        off, hop = self.config.boundary_offset_s + shift_s, PS_FRAME_S
        word_segments, phone_segments, _ = ali

        def t(frame: int) -> float:
            return round(min(max(frame * hop + off, 0.0), duration_s), 4)

        out_words: list[WordInterval] = []
        i = 0
        for name, start, end in word_segments:
            if i < len(keys) and _base(name) == keys[i]:
                out_words.append(WordInterval(words[i].text, t(start), t(end)))
                i += 1
        if i != len(keys):
            raise AlignmentError(
                f"aligner returned {i} of {len(keys)} words (unexpected decoder output)",
                utterance.audio,
            )
        noise_starts = {w.start_s for w, k in zip(out_words, keys) if k == NOISE_WORD}
        phones = tuple(
            PhoneInterval(name, t(start), t(end))
            for name, start, end in (phone_segments or ())
            if name not in FILLER_PHONES or (name == NOISE_PHONE and t(start) in noise_starts)
        )
        if phone_segments is None:
            log.warning("%s: phone-level pass failed; TextGrid has words only", utterance.id)
        return Alignment(
            utterance.id,
            tuple(out_words),
            phones,
            duration_s=round(duration_s, 6),
            aligner=f"pocketsphinx-{_version()}",
        )


def _n_matched(segments: list[tuple[str, int, int]], keys: list[str]) -> int:
    """How many of ``keys`` appear, in order, among the segment names (fillers skipped)."""
    i = 0
    for name, _, _ in segments:
        if i < len(keys) and _base(name) == keys[i]:
            i += 1
    return i


def _too_long(duration_s: float, max_s: float) -> str:
    return (
        f"recording is {duration_s:.0f} s long, more than the {max_s:.0f} s one alignment may "
        "take: split it into utterances (or raise --max-duration)"
    )


def _check_duration(path, max_s: float) -> None:
    """Refuse an over-long file from its header, before decoding it (bounded time)."""
    try:
        import soundfile as sf

        info = sf.info(str(path))
    except Exception:
        return  # not readable by libsndfile: load_audio decodes it and reports any problem
    if info.samplerate > 0 and info.frames / info.samplerate > max_s:
        raise AudioError(_too_long(info.frames / info.samplerate, max_s), path)
