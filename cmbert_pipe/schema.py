"""Records that cross a stage boundary, and the constants with units they are measured in.

Every record is a frozen dataclass with ``to_dict`` / ``from_dict`` so that it can be written
to JSON manifests and read back unchanged. Stages exchange these, never bare dicts or tuples.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SAMPLE_RATE = 16_000  # Hz: every stage works on 16 kHz mono float32
FRAME_HOP_S = 0.010  # s: acoustic frame k is centred at FRAME_OFFSET_S + k * FRAME_HOP_S
FRAME_OFFSET_S = 0.005  # s: centre of the first acoustic frame (COVAREP convention)
ACOUSTIC_DIM = 74  # COVAREP columns
MAX_SEQ_LEN = 50  # word-pieces, [CLS] and [SEP] included (CM-BERT default)
SPLITS = ("train", "dev", "test")


def _path_or_none(value: Any) -> Path | None:
    return None if value in (None, "") else Path(value)


def _float_or_none(value: Any) -> float | None:
    return None if value in (None, "") else float(value)


@dataclass(frozen=True)
class Utterance:
    """One recording and what is said in it.

    ``id`` is unique within a corpus and safe to use as a relative file path (it may contain
    ``/`` for corpora with sub-folders). ``label`` is sentiment in [-3, 3] where known.
    """

    id: str
    audio: Path
    transcript: str
    label: float | None = None
    split: str | None = None  # "train" | "dev" | "test" | None
    speaker: str | None = None
    transcript_path: Path | None = None  # where the transcript came from, for error messages

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "audio": str(self.audio),
            "transcript": self.transcript,
            "label": self.label,
            "split": self.split,
            "speaker": self.speaker,
            "transcript_path": str(self.transcript_path) if self.transcript_path else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Utterance:
        return cls(
            id=str(d["id"]),
            audio=Path(d["audio"]),
            transcript=str(d["transcript"]),
            label=_float_or_none(d.get("label")),
            split=d.get("split") or None,
            speaker=d.get("speaker") or None,
            transcript_path=_path_or_none(d.get("transcript_path")),
        )


@dataclass(frozen=True)
class WordInterval:
    """A word as the user wrote it, and where it is in the audio (seconds from the start)."""

    word: str
    start_s: float
    end_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"word": self.word, "start_s": self.start_s, "end_s": self.end_s}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WordInterval:
        return cls(str(d["word"]), float(d["start_s"]), float(d["end_s"]))


@dataclass(frozen=True)
class PhoneInterval:
    """A phone (ARPAbet for the pocketsphinx backend) and its place in the audio."""

    phone: str
    start_s: float
    end_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"phone": self.phone, "start_s": self.start_s, "end_s": self.end_s}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PhoneInterval:
        return cls(str(d["phone"]), float(d["start_s"]), float(d["end_s"]))


@dataclass(frozen=True)
class Alignment:
    """Word (and phone) intervals for one utterance, in transcript order."""

    utterance_id: str
    words: tuple[WordInterval, ...]
    phones: tuple[PhoneInterval, ...] = ()
    duration_s: float = 0.0
    aligner: str = ""  # backend name and version, e.g. "pocketsphinx-5.0.4"
    method: str = ""  # how it was found, e.g. "viterbi", "anchored" (align.quality.METHODS)
    quality: float | None = None  # per-frame acoustic fit normalised to (0, 1]; None: unknown

    def to_dict(self) -> dict[str, Any]:
        return {
            "utterance_id": self.utterance_id,
            "words": [w.to_dict() for w in self.words],
            "phones": [p.to_dict() for p in self.phones],
            "duration_s": self.duration_s,
            "aligner": self.aligner,
            "method": self.method,
            "quality": self.quality,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Alignment:
        return cls(
            utterance_id=str(d["utterance_id"]),
            words=tuple(WordInterval.from_dict(w) for w in d["words"]),
            phones=tuple(PhoneInterval.from_dict(p) for p in d.get("phones", [])),
            duration_s=float(d.get("duration_s", 0.0)),
            aligner=str(d.get("aligner", "")),
            method=str(d.get("method", "")),
            quality=None if d.get("quality") is None else float(d["quality"]),
        )


@dataclass(frozen=True)
class FeatureRecord:
    """Where one utterance's word-pooled features live in the cache, and how to read them.

    ``path`` is relative to the cache root; the entry is an ``.npz`` holding
    ``word_features`` (n_words, dim) float32, ``words``, ``word_start_s``, ``word_end_s`` and,
    when frames were kept, ``frames`` (n_frames, dim).
    """

    utterance_id: str
    key: str  # content address: hash of audio bytes, transcript, aligner and extractor settings
    path: str
    feature_set: str  # e.g. "covarep74", "egemaps"
    feature_version: str
    dim: int
    n_words: int
    n_frames: int = 0
    frame_hop_s: float = FRAME_HOP_S
    align_method: str = ""  # how the words were aligned (Alignment.method)
    align_quality: float | None = None  # Alignment.quality; None when the aligner gave none

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class ItemFailure:
    """One item of a batch run that failed: which, at what stage, and why."""

    item_id: str
    path: str | None
    stage: str  # "load", "align", "extract", "predict", ...
    reason: str
    error_type: str = "CmbertError"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ItemFailure:
        return cls(**d)


@dataclass(frozen=True)
class BatchSummary:
    """What a batch run did: counts, and every failure with its reason."""

    stage: str
    total: int
    done: int
    skipped: int  # already current, not recomputed
    failures: tuple[ItemFailure, ...] = field(default_factory=tuple)
    # recomputed because a key part changed: (part name, number of items), e.g. ("audio", 2)
    changed: tuple[tuple[str, int], ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "total": self.total,
            "done": self.done,
            "skipped": self.skipped,
            "failed": len(self.failures),
            "failures": [f.to_dict() for f in self.failures],
            "recomputed_because": dict(self.changed),
        }


SENTIMENT_CLASSES = (  # 7-class label names, index = round(clip(score, -3, 3)) + 3
    "strongly negative", "negative", "weakly negative", "neutral",
    "weakly positive", "positive", "strongly positive",
)


@dataclass(frozen=True)
class WordAttention:
    """One word of a scored clip: where it is, and how much the ``[CLS]`` row attends to it.

    ``multimodal`` is the ``[CLS]`` row of CM-BERT's W_m summed over the word's pieces (its share
    of the attention, rows sum to 1); ``text`` the same row of the text-only attention
    softmax(w_t·α_t) (W_m without the audio term); ``gate`` the mean audio shift of the word's
    pieces for the shifting models (MAG-BERT style). None where the model has no such quantity
    or the word was cut by the length limit.
    """

    word: str
    start_s: float
    end_s: float
    multimodal: float | None = None
    text: float | None = None
    gate: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WordAttention:
        return cls(**d)


@dataclass(frozen=True)
class Prediction:
    """The sentiment of one clip: score in [-3, 3], its polarity and 7-class label, the words.

    ``polarity`` follows the MOSI "has0" convention (score >= 0 is "positive"); ``class7`` is
    round(clip(score, -3, 3)) in -3..3, named by :data:`SENTIMENT_CLASSES`.
    """

    utterance_id: str
    audio: str
    transcript: str
    score: float
    polarity: str  # "positive" | "negative"
    class7: int  # -3..3
    class7_name: str
    words: tuple[WordAttention, ...] = ()
    model: str = ""  # model type of the bundle, e.g. "cmbert"
    label: float | None = None  # the gold label, where the corpus gives one
    timings_s: dict = field(default_factory=dict)  # stage -> seconds (align, features, model)
    acoustic_gate: float | None = None  # mean gate of the acoustic path (0..1); None = no path
    acoustic_shift: float | None = None  # ‖h − h_CLS‖ / ‖h_CLS‖: how far the audio moved [CLS]
    # --audio-start models: the score of the audio-only branch alone (None for other models)
    audio_branch_score: float | None = None
    note: str = ""  # e.g. which audio statistics were used

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["words"] = [w.to_dict() for w in self.words]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Prediction:
        """From :meth:`to_dict`, or a batch JSONL record (which adds ``key``/``key_parts``)."""
        d = {k: v for k, v in d.items() if k not in ("key", "key_parts")}
        d["words"] = tuple(WordAttention.from_dict(w) for w in d.get("words", []))
        return cls(**d)
