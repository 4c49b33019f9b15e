"""Forced alignment with PocketSphinx 5 (en-us acoustic model + CMUdict from its wheel), offline.

    >>> aligner = PocketsphinxAligner()
    >>> ali = aligner.align(Utterance("a", Path("a.wav"), "Hello world"))
    >>> [(w.word, w.start_s, w.end_s) for w in ali.words]

How: the transcript is normalised (:mod:`.normalize`); every word gets a dictionary entry
(CMUdict, or the offline neural G2P for the rest, parts of hyphenated or numeric words
concatenated; bracketed annotations get the model's ``+SPN+`` noise phone). Before any search,
the evidence that needs no search is checked (:mod:`.quality`): the transcript looks English,
the audio holds speech, and the transcript's phones can fit the speech (neither too many for the
audio nor far too few for the speech in it). Then the methods of :data:`.quality.METHODS`, in
order, each only where the one before found no path:

1. ``viterbi``: PocketSphinx's word-level Viterbi alignment against the word sequence, optional
   silences and fillers between words, then a state-level pass for phone boundaries
   (``set_align_text`` / ``set_alignment``), default beams;
2. ``viterbi-wide``: the same with far wider beams and more Gaussians per frame, also on the
   frame grid shifted by half a hop (5 ms);
3. ``garbage``: a grammar of the words with an optional garbage word (noise phones) between them;
4. ``anchored``: the words the wide pass placed before it lost its way, those that fit, as
   anchors; the rest placed between them by phone counts over the voiced audio;
5. ``proportional``: every word over the voiced audio by phone counts, only for voices beyond
   what the model can score (screams, singing: median F0 above 450 Hz), quality 0.

Every result carries ``method`` and ``quality`` (per-frame acoustic fit normalised to (0, 1],
:func:`.quality.quality_from_fit`). A transcript is refused, with the evidence named, when the
fit is very poor overall, when the poorly fitting words hold a large share both of the words'
time and of the transcript's phones (another sentence), or when the fallbacks find too few of
its words in a voice the model can score.

Times: PocketSphinx analyses 25.6 ms windows every 10 ms; a boundary before frame ``k`` is
reported at ``k * 10 ms + boundary_offset_s`` (0 measured best among -10..+10 ms).
``silprob`` 1.0 (PocketSphinx's default is 0.005) lets the optional silence between words
take the pauses instead of the words swallowing them (20 ms agreement with MFA's reference
62.3 % -> 68.6 %). Ideas measured and not kept are listed in docs/alignment.md.

Speed: each worker thread keeps its default and wide decoders (acoustic model loaded once) and
resets their front end before every utterance, so results equal a fresh decoder's
(:func:`_reused_decoder`).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cmbert_pipe.align.base import Aligner, register
from cmbert_pipe.align.g2p import g2p
from cmbert_pipe.align.normalize import NORMALIZER_VERSION, SpokenWord, spoken_words
from cmbert_pipe.align.quality import (
    METHODS,
    check_fits,
    fill_unplaced,
    median_f0_hz,
    place_by_phones,
    quality_from_fit,
    speech_segments,
)
from cmbert_pipe.align.segment import Piece, SegmentationError, plan_pieces
from cmbert_pipe.audio import load_audio
from cmbert_pipe.errors import AlignmentError, AudioError, ConfigError, TranscriptError
from cmbert_pipe.schema import SAMPLE_RATE, Alignment, PhoneInterval, Utterance, WordInterval

log = logging.getLogger(__name__)

PS_FRAME_S = 0.010  # s: PocketSphinx frame hop at its default 100 frames/s
NOISE_WORD = "zzspnzz"  # dictionary entry for bracketed annotations (noise pronunciations)
GARBAGE_WORD = "zzgarbagezz"  # optional filler between words in the grammar passes
NOISE_PHONE = "+SPN+"
# a bracketed annotation may be speech-like noise (+SPN+) or other noise (+NSN+), short or long
NOISE_PRONUNCIATIONS = ("+SPN+", "+NSN+", "+SPN+ +SPN+", "+NSN+ +NSN+", "+NSN+ +SPN+")
FILLER_PHONES = ("SIL", "+SPN+", "+NSN+")  # silence and noise: empty intervals in the phones tier


@dataclass(frozen=True)
class PocketsphinxConfig:
    """Everything that changes a PocketSphinx alignment (all of it goes into cache keys)."""

    beam: float = 1e-48  # state beam of the first try (PocketSphinx default)
    topn: int = 4  # Gaussians scored per frame in the first try (PocketSphinx default)
    retry_beam: float = 1e-100  # wider beam for the single retry when the first try fails
    retry_topn: int = 16  # Gaussians scored per frame in the retry (default 4: coarser)
    retry_shift_s: float = 0.005  # s: last resort, both searches on the frame grid shifted so
    #   (half a hop): the search is fragile enough that a 5 ms shift can decide success
    silprob: float = 1.0  # optional-silence insertion probability (PocketSphinx default 0.005)
    boundary_offset_s: float = 0.0  # s added to every frame boundary (0 measured best, README)
    frame_rate_hz: int = 100  # analysis frames per second (the acoustic model was trained at 100)
    cmn: str = "live"  # cepstral mean normalisation: "live" (running estimate) or "batch"
    max_duration_s: float = 300.0  # s: longer recordings are refused
    segment_above_s: float = 60.0  # s: longer recordings are cut at pauses and aligned piece
    #   by piece (memory bounded by the piece, :mod:`.segment`)
    segment_window_s: float = 40.0  # s: window of the word pass that finds the cuts
    segment_margin_s: float = 5.0  # s: words ending in the window's last stretch are not trusted
    segment_min_pause_s: float = 0.25  # s: a pause this long between words is a cut point
    segment_beam: float = 1e-80  # beam of that word pass (every HMM kept, default Gaussians):
    #   the default beam lost its way on a 40 s window and cut in the wrong place
    min_quality: float = 0.135  # below: the transcript does not match (exp(-4 / 2): fit -4)
    min_word_quality: float = 0.2  # a word whose own fit is below this fits poorly
    max_poor_share: float = 0.3  # more of the words' time fitting poorly: transcript mismatch,
    poor_share_of_phones: bool = True  # ... only if those words also hold more than that share
    #   of the transcript's phones (one drawn-out word is not another sentence)
    raised_voice_f0_hz: float = 350.0  # Hz: ... unless the voice is raised (median F0 above
    #   this: shouting), where the model's word fit is unreliable (RAVDESS strong intensity)
    min_anchor_share: float = 0.5  # anchoring: at least this share of the words must be found
    min_anchor_quality: float = 0.15  # ... each with a fit of at least this quality
    unscorable_f0_hz: float = 450.0  # Hz: proportional placement only for voices whose median
    #   F0 lies above this (screams, singing): beyond the read speech the model was trained on
    phone_count_ratio: tuple[float, float] = (0.5, 2.0)  # ... and when a free phone recognition
    #   hears between these multiples of the transcript's phone count
    max_oov_fraction: float = 0.5  # more words than this missing from CMUdict -> not English
    min_words_for_oov_check: int = 4  # the OOV check needs at least this many words

    def __post_init__(self) -> None:
        if not self.max_duration_s > 0:
            raise ConfigError(f"max_duration_s must be positive, got {self.max_duration_s}")
        if not 0 <= self.segment_margin_s < self.segment_window_s <= self.segment_above_s:
            raise ConfigError("expected 0 <= segment_margin_s < segment_window_s <= "
                              f"segment_above_s, got {self.segment_margin_s}, "
                              f"{self.segment_window_s}, {self.segment_above_s}")


@functools.lru_cache(maxsize=1)
def _version() -> str:
    from importlib.metadata import version

    return version("pocketsphinx")


class _CmuDict:
    """CMUdict of the pocketsphinx wheel, looked up lazily: word -> pronunciations in the file's
    variant order (``the``, ``the(2)``, ...). Reading the 3.5 MB file is ~1 ms; parsing all 135k
    lines into a dict cost ~0.4 s CPU on every new process (a cold ``cmbert predict``), so each
    word is found with ``str.find`` when first asked for and remembered."""

    def __init__(self, path: Path):
        self._text = "\n" + path.read_text(encoding="utf-8")
        self._seen: dict[str, tuple[str, ...] | None] = {}

    def _lookup(self, word: str) -> tuple[str, ...] | None:
        if word not in self._seen:
            found: list[tuple[int, str]] = []
            for head in (f"\n{word} ", f"\n{word}("):
                at = self._text.find(head)
                while at >= 0:
                    end = self._text.find("\n", at + 1)
                    line = self._text[at + 1 : end if end >= 0 else None].strip()
                    name, _, phones = line.partition(" ")
                    if phones and _base(name) == word:
                        found.append((at, phones.strip()))
                    at = self._text.find(head, at + 1)
            self._seen[word] = tuple(p for _, p in sorted(found)) or None
        return self._seen[word]

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and bool(word) and self._lookup(word) is not None

    def __getitem__(self, word: str) -> tuple[str, ...]:
        prons = self._lookup(word) if word else None
        if prons is None:
            raise KeyError(word)
        return prons


@functools.lru_cache(maxsize=1)
def model_file(name: str) -> Path:
    """A file (or folder) of the en-us model shipped in the pocketsphinx wheel."""
    import pocketsphinx

    return Path(pocketsphinx.get_model_path()) / "en-us" / name


def _cmudict() -> _CmuDict:
    """CMUdict of the pocketsphinx wheel (word -> pronunciations, see :class:`_CmuDict`)."""
    return _CmuDict(model_file("cmudict-en-us.dict"))


def _decoder(config: PocketsphinxConfig, wide: bool, lexicon: dict[str, tuple[str, ...]],
             beam: float | None = None):
    """A fresh decoder that knows exactly ``lexicon`` (key -> pronunciations) and no LM.

    The wide one (the retry) scores more Gaussians per frame, keeps every HMM and prunes with
    far wider beams: slower, but it finds a path where the default search loses it. ``beam``:
    that beam instead, with every HMM kept and the default Gaussians (the long-recording pass).
    """
    from pocketsphinx import Decoder

    if beam is not None:
        options = {"beam": beam, "pbeam": beam, "wbeam": beam * 1e20, "topn": config.topn,
                   "maxhmmpf": -1}
    elif wide:
        b = config.retry_beam
        options = {"beam": b, "pbeam": b, "wbeam": b * 1e20, "topn": config.retry_topn,
                   "maxhmmpf": -1}
    else:
        options = {"beam": config.beam, "pbeam": config.beam, "topn": config.topn}
    lines = []
    for key, prons in sorted(lexicon.items()):
        lines += [f"{key if i == 0 else f'{key}({i + 1})'} {p}" for i, p in enumerate(prons)]
    fd, dict_path = tempfile.mkstemp(prefix="cmbert-ps-", suffix=".dict")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        return Decoder(loglevel="FATAL", silprob=config.silprob, lm=None, dict=dict_path,
                       frate=config.frame_rate_hz, cmn=config.cmn, **options)
    finally:
        os.unlink(dict_path)


_REUSED = threading.local()  # per thread: (config, wide) -> (decoder, key -> pronunciations)


def _reused_decoder(config: PocketsphinxConfig, wide: bool,
                    lexicon: dict[str, tuple[str, ...]]):
    """A decoder for ``lexicon`` that is kept for the next utterance of this thread, in the
    state a fresh one starts in: the same results as :func:`_decoder`, without loading the
    acoustic model again (~10 % of the CPU time of a short clip).

    A decoder carries state from one utterance to the next: the running cepstral mean
    (``cmn`` live) and the noise estimate of the front end (``remove_noise``), which changed
    word boundaries. ``reinit_feat`` rebuilds the front end and the feature computation from
    the configuration, so each utterance starts where a fresh decoder starts. The dictionary
    only grows (``add_word``): the forced-alignment search (``set_align_text``) uses only the
    words of the transcript, so other words in it change nothing. A key already known with
    other pronunciations (not possible with :meth:`PocketsphinxAligner._lexicon`, whose keys
    determine their pronunciations) gets a fresh decoder instead.
    """
    cache = getattr(_REUSED, "decoders", None)
    if cache is None:
        cache = _REUSED.decoders = {}
    entry = cache.get((config, wide))
    if entry is None or any(entry[1].get(k, p) != p for k, p in lexicon.items()):
        entry = cache[(config, wide)] = (_decoder(config, wide, lexicon), dict(lexicon))
        return entry[0]
    decoder, known = entry
    for key, prons in sorted(lexicon.items()):
        if key not in known:
            for i, pron in enumerate(prons):
                decoder.add_word(key if i == 0 else f"{key}({i + 1})", pron, update=False)
            known[key] = prons
    decoder.reinit_feat()
    return decoder


def clear_reused_decoders() -> None:
    """Drop this thread's kept decoders (the next alignment builds fresh ones)."""
    _REUSED.decoders = {}


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
            # the decoder is kept per worker but reset to a fresh one's state per utterance
            # (bit-identical results, tests/test_align_determinism.py): the value stays
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
    def _run(self, decoder, keys: list[str], pcm: bytes, partial: bool = False) -> _Path | None:
        """Word pass then phone pass over exactly ``keys`` (``set_align_text``): None when no
        path runs through all the words, unless ``partial``: then the best path so far (the
        words before the search lost its way)."""
        try:
            decoder.set_align_text(" ".join(keys))
        except RuntimeError as e:
            log.debug("pocketsphinx align text: %s", e)
            return None
        return self._passes(decoder, keys, pcm, require_all=not partial)

    def _run_grammar(self, decoder, keys: list[str], pcm: bytes):
        """Word pass over a grammar of the words by position (``w0 w1 ...``) with an optional
        garbage word (noise phones) before and after each, then the phone pass."""
        slots = [f"w{i} [ {GARBAGE_WORD} ]" for i in range(len(keys))]
        grammar = ("#JSGF V1.0;\ngrammar ali;\npublic <utt> = [ " + GARBAGE_WORD + " ] "
                   + " ".join(slots) + ";\n")
        try:
            decoder.add_jsgf_string("ali", grammar)
            decoder.activate_search("ali")
        except RuntimeError as e:
            log.debug("pocketsphinx grammar: %s", e)
            return None
        return self._passes(decoder, [f"w{i}" for i in range(len(keys))], pcm)

    def _passes(self, decoder, keys: list[str], pcm: bytes, require_all: bool = True):
        """The word pass with the search already set up, then the phone pass; see :class:`_Path`.

        The fit is the mean log acoustic score per frame inside words. PocketSphinx scores each
        frame relative to its best-scoring senone, so this is a log-likelihood ratio against
        the best free phone sequence: near 0 when the words fit the sound, very negative when
        the transcript forces phones that are not there.
        """
        try:
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
            if decoder.hyp() is None:
                return None
            segments = list(decoder.seg())
        except RuntimeError as e:
            log.debug("pocketsphinx word pass: %s", e)
            return None
        words = [(s.word, s.start_frame, s.end_frame + 1) for s in segments]
        scores = [(s.word, s.start_frame, s.end_frame + 1, math.log(max(s.ascore, 1e-300)))
                  for s in segments]
        n_found = _n_matched(words, keys)
        if require_all and n_found != len(keys):  # a word lost on the way: no usable path
            return None
        path = _Path(words, None, scores)
        if n_found != len(keys):
            return path
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
            return path
        if _n_matched(state_words, keys) != len(keys):
            return path
        return _Path(state_words, phones, scores)

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
        n_phones = [0 if k == NOISE_WORD else len(lexicon[k][0].split()) for k in keys]
        segments = speech_segments(wave)
        why = check_fits(sum(n_phones), duration_s, sum(e - s for s, e in segments))
        if why is not None:
            raise AlignmentError(why, utterance.audio)
        if duration_s > cfg.segment_above_s:
            return self._align_long(utterance, words, keys, lexicon, wave, duration_s)
        return self._align_words(utterance, words, keys, lexicon, wave, n_phones, segments,
                                 duration_s)

    def _align_words(self, utterance, words, keys, lexicon, wave, n_phones, segments,
                     duration_s) -> Alignment:
        """The search, the evidence on its path, and the fallbacks (after the checks)."""
        cfg = self.config
        found = self._search(utterance, keys, lexicon, wave)
        if isinstance(found, tuple):
            method, path, shift_s = found
            fit = path.fit(keys)
            quality = quality_from_fit(fit)
            if quality < cfg.min_quality:
                raise AlignmentError(
                    f"the transcript does not match the audio: acoustic fit {fit:.2f} nats per "
                    f"frame (quality {quality:.3f}, below {cfg.min_quality}) with method "
                    f"{method}", utterance.audio)
            poor, time_share, phone_share = path.poor_words(keys, cfg.min_word_quality, n_phones)
            share = self._poor_share(time_share, phone_share)
            f0_hz = median_f0_hz(wave, segments) if share > cfg.max_poor_share else 0.0
            if share > cfg.max_poor_share and f0_hz >= cfg.raised_voice_f0_hz:
                log.warning("%s: words fitting poorly hold %.0f%% of the words' time and %.0f%% "
                            "of the phones, in a raised voice (median F0 %.0f Hz) where word "
                            "fit is no evidence: kept", utterance.id, 100 * time_share,
                            100 * phone_share, f0_hz)
            elif share > cfg.max_poor_share:
                of_phones = (f" and {phone_share:.0%} of the transcript's phones"
                             if cfg.poor_share_of_phones else "")
                raise AlignmentError(
                    "the transcript does not match the audio: "
                    + ", ".join(repr(words[i].text) for i in poor)
                    + f" ({time_share:.0%} of the words' time{of_phones}, more than "
                    f"{cfg.max_poor_share:.0%}) fit the sound poorly (quality below "
                    f"{cfg.min_word_quality}; voice median F0 {f0_hz:.0f} Hz)",
                    utterance.audio)
            return self._to_alignment(utterance, words, keys, path, duration_s, shift_s,
                                      method=method, quality=quality)
        return self._fallback(utterance, words, keys, found, wave, n_phones, segments,
                              duration_s)

    def _poor_share(self, time_share: float, phone_share: float) -> float:
        """The poor-word share the refusal compares with ``max_poor_share``: the share of the
        words' time, or (``poor_share_of_phones``) the smaller of it and the share of the
        transcript's phones, so that both must exceed the limit. Time alone lets one
        lengthened word (a drawn-out phrase-final word in slow, sad speech: Klatt 1976,
        "Linguistic uses of segmental duration in English") outweigh the rest; phones alone
        let short reduced words count as full ones."""
        return min(time_share, phone_share) if self.config.poor_share_of_phones else time_share

    def path_evidence(self, utterance: Utterance,
                      wave: np.ndarray | None = None) -> tuple[str, float, float] | None:
        """(method, quality, poor-word share as the refusal reads it, :meth:`_poor_share`) of
        the path the search finds for a short recording, before any refusal; None when no full
        path is found. For diagnosis and benchmarks: what :meth:`align` judges."""
        found = self.word_evidence(utterance, wave)
        if found is None:
            return None
        method, quality, evidence = found
        _, time_share, phone_share = poor_shares([w[1:] for w in evidence],
                                                 self.config.min_word_quality)
        return method, quality, self._poor_share(time_share, phone_share)

    def word_evidence(self, utterance: Utterance, wave: np.ndarray | None = None
                      ) -> tuple[str, float, list[tuple[str, int, float, int]]] | None:
        """(method, quality, per word: (dictionary key, frames, quality of its own fit, phones of
        its first pronunciation)) of the path the search finds for a short recording, noise
        words left out; None when no full path is found (what :meth:`path_evidence` reads)."""
        words = spoken_words(utterance.transcript, source=str(utterance.audio))
        wave = load_audio(utterance.audio) if wave is None else wave
        keys, lexicon, _ = self._lexicon(words, str(utterance.audio))
        found = self._search(utterance, keys, lexicon, wave)
        if not isinstance(found, tuple):
            return None
        method, path, _ = found
        evidence = [(keys[i], e - s, quality_from_fit(f), len(lexicon[keys[i]][0].split()))
                    for i, (s, e, f) in sorted(path.anchors(keys).items())
                    if keys[i] != NOISE_WORD]
        return method, quality_from_fit(path.fit(keys)), evidence

    # -- long recordings ----------------------------------------------------------------------
    def _spot(self, keys, lexicon, wave, beams: tuple[float, ...], t0_s: float, t1_s: float,
              first: int) -> list[tuple[int, float, float]]:
        """The words from ``first`` on that a word pass places in ``wave[t0_s:t1_s]``, with a
        grammar that accepts any prefix of them (see :mod:`.segment`): (index, start_s,
        end_s), times in the whole recording; each of ``beams`` tried in turn until one places
        a word. Offered words: four times as many as the transcript's average rate puts in the
        window (more when the window holds them all)."""
        cfg = self.config
        rate = len(keys) / max(wave.shape[0] / SAMPLE_RATE, 1e-3)  # words per s
        n_offer = math.ceil(4 * rate * (t1_s - t0_s)) + 20
        pcm = _pcm16(wave[round(t0_s * SAMPLE_RATE):round(t1_s * SAMPLE_RATE)])
        hop = 1.0 / cfg.frame_rate_hz
        while True:
            offered = keys[first:first + n_offer]
            placed: list[tuple[int, float, float]] = []
            for beam in beams:
                decoder = _decoder(cfg, False, {k: lexicon[k] for k in offered}, beam=beam)
                n = len(offered)
                arcs = [(i, i + 1, 1.0, k) for i, k in enumerate(offered)]
                arcs += [(i, n, 1.0) for i in range(1, n)]  # stop after any word
                try:
                    decoder.add_fsg("prefix", decoder.create_fsg("prefix", 0, n, arcs))
                    decoder.activate_search("prefix")
                    decoder.start_utt()
                    decoder.process_raw(pcm, full_utt=True)
                    decoder.end_utt()
                    segs = list(decoder.seg()) if decoder.hyp() is not None else []
                except RuntimeError as e:
                    log.debug("pocketsphinx prefix pass: %s", e)
                    segs = []
                i = 0
                for seg in segs:
                    if i < n and _base(seg.word) == offered[i]:
                        placed.append((first + i, t0_s + seg.start_frame * hop,
                                       t0_s + (seg.end_frame + 1) * hop))
                        i += 1
                if placed:
                    break
            if len(placed) < len(offered) or first + n_offer >= len(keys):
                return placed
            n_offer *= 2  # every offered word placed: the window may hold more

    def _align_long(self, utterance, words, keys, lexicon, wave, duration_s) -> Alignment:
        """Cut at pauses (:func:`.segment.plan_pieces`), align each piece on its own, join:
        memory is bounded by the piece length, not the recording's. Where a piece cannot be
        aligned, the rest is planned again from its start with the retry's wider beam (a
        word pass that lost its way puts the cut in the wrong place). The method is the last
        in :data:`.quality.METHODS` order any piece needed; the quality is the pieces' mean
        weighted by their length."""
        cfg = self.config
        out_words: list[WordInterval] = []
        out_phones: list[PhoneInterval] = []
        methods, weighted = [], 0.0
        start_s, first, failed = 0.0, 0, None
        while first < len(keys):
            beams = (cfg.retry_beam,) if failed else (cfg.segment_beam, cfg.retry_beam)
            pieces = plan_pieces(
                duration_s, len(keys), functools.partial(self._spot, keys, lexicon, wave, beams),
                start_s=start_s, first_word=first, window_s=cfg.segment_window_s,
                margin_s=cfg.segment_margin_s, min_pause_s=cfg.segment_min_pause_s)
            try:
                for piece in pieces:
                    if failed is not None and piece == failed[0]:
                        raise failed[1]  # planned again, cut the same way: the same failure
                    try:
                        ali = self._align_piece(utterance, words, keys, lexicon, wave, piece)
                    except AlignmentError as e:
                        if failed is not None:
                            raise
                        log.info("%s: %s; planning again from %.1f s with the wide beam",
                                 utterance.id, e.reason, piece.start_s)
                        failed = (piece, e)
                        break
                    log.info("%s: piece %.1f-%.1f s aligned (%s)", utterance.id,
                             piece.start_s, piece.end_s, ali.method)
                    off = piece.start_s
                    out_words += [WordInterval(w.word, round(w.start_s + off, 4),
                                               round(w.end_s + off, 4)) for w in ali.words]
                    out_phones += [PhoneInterval(p.phone, round(p.start_s + off, 4),
                                                 round(p.end_s + off, 4)) for p in ali.phones]
                    methods.append(ali.method)
                    weighted += (ali.quality or 0.0) * (piece.end_s - piece.start_s)
                    start_s, first = piece.end_s, piece.end_word
            except SegmentationError as e:
                raise AlignmentError(f"the transcript does not match the audio: {e}",
                                     utterance.audio) from None
        method = max(methods, key=METHODS.index)
        return Alignment(utterance.id, tuple(out_words), tuple(out_phones),
                         duration_s=round(duration_s, 6), aligner=f"pocketsphinx-{_version()}",
                         method=method, quality=round(weighted / duration_s, 4))

    def _align_piece(self, utterance, words, keys, lexicon, wave, piece: Piece) -> Alignment:
        """One piece of a long recording aligned like a short one (times in the piece)."""
        sub_wave = wave[round(piece.start_s * SAMPLE_RATE):round(piece.end_s * SAMPLE_RATE)]
        sub_keys = keys[piece.first_word:piece.end_word]
        sub = Utterance(f"{utterance.id}@{piece.start_s:.1f}s", utterance.audio,
                        utterance.transcript)
        n_phones = [0 if k == NOISE_WORD else len(lexicon[k][0].split()) for k in sub_keys]
        segments = speech_segments(sub_wave)
        piece_s = sub_wave.shape[0] / SAMPLE_RATE
        try:
            why = check_fits(sum(n_phones), piece_s, sum(e - s for s, e in segments))
            if why is not None:
                raise AlignmentError(why, utterance.audio)
            return self._align_words(sub, words[piece.first_word:piece.end_word], sub_keys,
                                     lexicon, sub_wave, n_phones, segments, piece_s)
        except AlignmentError as e:
            raise AlignmentError(
                f"{e.reason} (in the piece {piece.start_s:.1f}-{piece.end_s:.1f} s, words "
                f"{piece.first_word + 1}-{piece.end_word} of the transcript)",
                utterance.audio) from None

    def _search(self, utterance, keys, lexicon, wave):
        """(method, path, grid shift in s) of the first full path found, or None: default
        beams, wide beams (on two frame grids), then the garbage grammar."""
        cfg = self.config
        shifts = (0.0, cfg.retry_shift_s) if cfg.retry_shift_s > 0 else (0.0,)
        pcm0 = _pcm16(wave)
        path = self._run(_reused_decoder(cfg, False, lexicon), keys, pcm0)
        if path is not None and path.phones is not None:
            return "viterbi", path, 0.0
        best = ("viterbi", path, 0.0) if path is not None else None
        partial = None
        for shift_s in shifts:
            log.info("%s: retrying with the wide search (grid shift %g s)", utterance.id, shift_s)
            pcm = pcm0 if shift_s == 0 else _pcm16(wave[round(shift_s * SAMPLE_RATE):])
            wide = self._run(_reused_decoder(cfg, True, lexicon), keys, pcm,
                             partial=shift_s == 0)
            if wide is not None and _n_matched(wide.words, keys) < len(keys):
                partial, wide = wide, None  # the words placed before the search lost its way
            if wide is not None and (best is None or wide.phones is not None):
                best = ("viterbi-wide", wide, shift_s)
            if best is not None:
                return best
        log.info("%s: retrying with optional garbage between the words", utterance.id)
        positional = _positional_lexicon(keys, lexicon)
        garbage = self._run_grammar(_decoder(cfg, False, positional), keys, pcm0)
        if garbage is not None:
            return "garbage", garbage.renamed(keys), 0.0
        return partial

    def _fallback(self, utterance, words, keys, partial, wave, n_phones, segments, duration_s):
        """No full path. ``anchored``: the words the wide word pass placed before it lost its
        way (``partial``; the last of them, cut off where the search ended, is not trusted)
        with a fit of quality ``min_anchor_quality`` or more are kept, the others are placed
        between them by phone counts; it needs ``min_anchor_share`` of the words so kept and
        at most ``max_poor_share`` of the placed time fitting poorly. ``proportional``: every
        word over the voiced region by phone counts, only for voices beyond what the model
        can score (median F0 above ``unscorable_f0_hz``: screams, singing) and when a free
        phone recognition hears about as many phones as the transcript has. Otherwise the
        evidence says the transcript is wrong: refuse, saying which evidence."""
        cfg = self.config
        anchors, placed = {}, {}
        if partial is not None:
            placed = partial.anchors(keys)
            placed.pop(max(placed, default=None), None)
            anchors = {i: a for i, a in placed.items()
                       if quality_from_fit(a[2]) >= cfg.min_anchor_quality}
        share = len(anchors) / len(keys)
        frames = sum(e - s for s, e, _ in placed.values()) if partial is not None else 0
        poor = sum(e - s for i, (s, e, _) in placed.items() if i not in anchors) / max(frames, 1)
        if share >= cfg.min_anchor_share and poor <= cfg.max_poor_share:
            hop = 1.0 / cfg.frame_rate_hz
            spans: list[tuple[float, float] | None] = [None] * len(keys)
            for i, (start, end, _) in anchors.items():
                spans[i] = (start * hop, end * hop)
            first = segments[0][0] if segments else 0.0
            last = segments[-1][1] if segments else duration_s
            spans = fill_unplaced(spans, first, last, n_phones, segments)
            quality = round(sum(quality_from_fit(a[2]) for a in anchors.values()) / len(keys), 4)
            method = "anchored"
        else:
            found = (f"the word pass placed {len(anchors)} of the {len(keys)} words with a "
                     f"fit of quality {cfg.min_anchor_quality} or more")
            f0_hz = median_f0_hz(wave, segments)
            if f0_hz < cfg.unscorable_f0_hz:
                raise AlignmentError(
                    f"the transcript does not match the audio: no alignment path, and {found} "
                    f"(a right transcript has at least {cfg.min_anchor_share:.0%}); the voice "
                    f"(median F0 {f0_hz:.0f} Hz) is in the range the acoustic model scores",
                    utterance.audio)
            n_heard, n_want = _count_phones(wave, segments), sum(n_phones)
            lo, hi = cfg.phone_count_ratio
            if not lo * n_want <= n_heard <= hi * n_want:
                raise AlignmentError(
                    f"the transcript does not match the audio: {found}, and a free phone "
                    f"recognition hears {n_heard} phones where the transcript has {n_want}",
                    utterance.audio)
            log.warning("%s: median F0 %.0f Hz (screamed or sung) is beyond what the acoustic "
                        "model scores: words placed by phone counts, unverified", utterance.id,
                        f0_hz)
            spans = place_by_phones(n_phones, segments)
            quality, method = 0.0, "proportional"
        log.warning("%s: aligned by %s (quality %.3f)", utterance.id, method, quality)
        out = tuple(WordInterval(w.text, round(float(s), 4), round(float(e), 4))
                    for w, (s, e) in zip(words, spans, strict=True))
        return Alignment(utterance.id, out, (), duration_s=round(duration_s, 6),
                         aligner=f"pocketsphinx-{_version()}", method=method, quality=quality)

    def _to_alignment(self, utterance, words, keys, path, duration_s, shift_s=0.0, *,
                      method: str = "viterbi", quality: float | None = None) -> Alignment:
        off, hop = self.config.boundary_offset_s + shift_s, 1.0 / self.config.frame_rate_hz
        word_segments, phone_segments = path.words, path.phones

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
        noise_starts = {w.start_s for w, k in zip(out_words, keys, strict=True) if k == NOISE_WORD}
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
            method=method,
            quality=quality,
        )


def poor_shares(evidence: Sequence[tuple[int, float, int]], min_quality: float
                ) -> tuple[list[int], float, float]:
    """Per word ``(frames, quality of its own fit, phones)``: (indices of the words whose
    quality is below ``min_quality``, their share of all the words' frames, their share of all
    the words' phones)."""
    poor = [j for j, (_, q, _) in enumerate(evidence) if q < min_quality]
    frames = sum(w[0] for w in evidence)
    phones = sum(w[2] for w in evidence)
    return (poor, sum(evidence[j][0] for j in poor) / max(frames, 1),
            sum(evidence[j][2] for j in poor) / max(phones, 1))


@dataclass
class _Path:
    """One search result: ``words`` and ``phones`` as (name, start_frame, end_frame), phones
    None when the phone pass failed; ``scores``: the word pass's segments as (name,
    start_frame, end_frame, log acoustic score)."""

    words: list[tuple[str, int, int]]
    phones: list[tuple[str, int, int]] | None
    scores: list[tuple[str, int, int, float]]

    def renamed(self, keys: list[str]) -> _Path:
        """Positional names ``w3`` back to the dictionary keys."""
        def name(n: str) -> str:
            b = _base(n)
            return keys[int(b[1:])] if b.startswith("w") and b[1:].isdigit() else n

        return _Path([(name(n), s, e) for n, s, e in self.words], self.phones,
                     [(name(n), s, e, v) for n, s, e, v in self.scores])

    def anchors(self, keys: list[str]) -> dict[int, tuple[int, int, float]]:
        """Word index -> (start_frame, end_frame, fit per frame) of the words placed in order."""
        out, i = {}, 0
        for name, start, end, score in self.scores:
            base = _base(name)
            if base.startswith(("<", "[")) or base == GARBAGE_WORD:
                continue
            while i < len(keys) and keys[i] != base:
                i += 1
            if i == len(keys):
                break
            out[i] = (start, end, score / max(end - start, 1))
            i += 1
        return out

    def poor_words(self, keys: list[str], min_quality: float,
                   n_phones: list[int]) -> tuple[list[int], float, float]:
        """(indices of the words whose own fit is below ``min_quality``, their share of the
        frames of all words, their share of the phones of all words); ``n_phones``: phones of
        each word's first pronunciation. Noise words are left out."""
        items = [(i, e - s, quality_from_fit(f), n_phones[i])
                 for i, (s, e, f) in self.anchors(keys).items() if keys[i] != NOISE_WORD]
        poor, time_share, phone_share = poor_shares([it[1:] for it in items], min_quality)
        return [items[j][0] for j in poor], time_share, phone_share

    def fit(self, keys: list[str]) -> float:
        """Mean log acoustic score per frame over the transcript's words (noise words out)."""
        anchors = self.anchors(keys)
        spoken = [a for i, a in anchors.items() if keys[i] != NOISE_WORD]
        frames = sum(e - s for s, e, _ in spoken)
        return sum(f * (e - s) for s, e, f in spoken) / max(frames, 1)


def _count_phones(wave: np.ndarray, segments) -> int:
    """Speech phones (silence and noise left out) a free phone-loop recognition (the model's
    phonetic language model) finds in the voiced ``segments`` of ``wave``."""
    from pocketsphinx import Decoder

    model = model_file("en-us-phone.lm.bin")
    decoder = Decoder(loglevel="FATAL", allphone=str(model), lm=None, beam=1e-20, pbeam=1e-20,
                      lw=2.0)
    n = 0
    for start_s, end_s in segments:
        pcm = _pcm16(wave[round(start_s * SAMPLE_RATE):round(end_s * SAMPLE_RATE)])
        try:
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
        except RuntimeError:
            continue
        n += sum(1 for s in decoder.seg() if s.word not in FILLER_PHONES and
                 not s.word.startswith(("+", "<")))
    return n


def _positional_lexicon(keys: list[str], lexicon: dict[str, tuple[str, ...]]):
    """Dictionary of ``w<i>`` -> pronunciations of word i, plus the garbage word."""
    out = {f"w{i}": lexicon[k] for i, k in enumerate(keys)}
    out[GARBAGE_WORD] = NOISE_PRONUNCIATIONS
    return out


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
