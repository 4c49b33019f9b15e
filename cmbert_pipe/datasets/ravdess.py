"""RAVDESS speech (Livingstone & Russo, PLoS ONE 2018) as a sentiment corpus.

File names are ``03-01-EE-II-SS-RR-AA.<ext>`` (modality, vocal channel, emotion, intensity,
statement, repetition, actor). The two statements never change, so whatever a model learns
about valence here must come from the audio.

Valence labels (the project's convention, ``../shared/data/README.md``): happy +2, calm +1,
neutral 0, surprised +1, sad -2, angry -2, fearful -2, disgust -2; strong intensity multiplies
by 1.5, clipped to [-3, 3]. Splits are speaker-independent, by actor (default train 01-08,
dev 09-10, test 11-12; any actor in none of the three is left out).

    >>> scan = load_ravdess("ravdess/")                         # Actor_*/03-01-*.flac
    >>> scan = load_ravdess("ravdess/", splits=RavdessSplits(train=(1, 2), dev=(3,), test=(4,)))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cmbert_pipe.audio import AUDIO_EXTENSIONS
from cmbert_pipe.corpus import CorpusScan
from cmbert_pipe.errors import ConfigError
from cmbert_pipe.schema import ItemFailure, Utterance

EMOTIONS = {
    1: "neutral", 2: "calm", 3: "happy", 4: "sad",
    5: "angry", 6: "fearful", 7: "disgust", 8: "surprised",
}
VALENCE = {
    "happy": 2.0, "calm": 1.0, "neutral": 0.0, "surprised": 1.0,
    "sad": -2.0, "angry": -2.0, "fearful": -2.0, "disgust": -2.0,
}
STRONG_FACTOR = 1.5  # intensity 02 ("strong") scales the valence, then it is clipped to +-3
STATEMENTS = {1: "Kids are talking by the door", 2: "Dogs are sitting by the door"}
# Binary evaluation classes (README): neutral and surprised belong to neither.
POSITIVE = frozenset({"calm", "happy"})
NEGATIVE = frozenset({"sad", "angry", "fearful", "disgust"})


@dataclass(frozen=True)
class RavdessSplits:
    """Actor numbers of each split (speaker-independent)."""

    train: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    dev: tuple[int, ...] = (9, 10)
    test: tuple[int, ...] = (11, 12)

    def __post_init__(self) -> None:
        seen: dict[int, str] = {}
        for name in ("train", "dev", "test"):
            for actor in getattr(self, name):
                if actor in seen:
                    raise ConfigError(f"actor {actor} is in both {seen[actor]} and {name} splits")
                seen[actor] = name

    def split_of(self, actor: int) -> str | None:
        for name in ("train", "dev", "test"):
            if actor in getattr(self, name):
                return name
        return None


@dataclass(frozen=True)
class RavdessName:
    """The fields of one RAVDESS file name."""

    emotion: str
    strong: bool
    statement: int
    repetition: int
    actor: int

    @property
    def valence(self) -> float:
        return ravdess_valence(self.emotion, self.strong)


def ravdess_valence(emotion: str, strong: bool) -> float:
    """Sentiment label in [-3, 3] for an emotion and intensity (see the module docstring)."""
    value = VALENCE[emotion] * (STRONG_FACTOR if strong else 1.0)
    return max(-3.0, min(3.0, value))


def parse_name(stem: str) -> RavdessName:
    """Parse ``03-01-EE-II-SS-RR-AA``; ValueError naming the part that is wrong."""
    parts = stem.split("-")
    if len(parts) != 7 or not all(p.isdigit() for p in parts):
        raise ValueError("not a RAVDESS name (expected 7 numeric fields MM-VV-EE-II-SS-RR-AA)")
    _, _, emotion, intensity, statement, repetition, actor = (int(p) for p in parts)
    if emotion not in EMOTIONS:
        raise ValueError(f"unknown emotion code {emotion:02d}")
    if intensity not in (1, 2):
        raise ValueError(f"unknown intensity code {intensity:02d}")
    if statement not in STATEMENTS:
        raise ValueError(f"unknown statement code {statement:02d}")
    return RavdessName(EMOTIONS[emotion], intensity == 2, statement, repetition, actor)


def load_ravdess(root: str | Path, splits: RavdessSplits | None = None) -> CorpusScan:
    """Every RAVDESS speech clip under ``root`` (recursive), labelled and split by actor.

    Files whose names do not parse come back as failures; clips of actors in no split are
    left out silently (that is what choosing the splits means).
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError("RAVDESS folder not found", root)
    splits = splits or RavdessSplits()
    utterances: list[Utterance] = []
    failures: list[ItemFailure] = []
    files = sorted(p for p in root.rglob("*")
                   if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    for path in files:
        try:
            name = parse_name(path.stem)
        except ValueError as e:
            failures.append(ItemFailure(path.stem, str(path), "load", str(e), "ConfigError"))
            continue
        split = splits.split_of(name.actor)
        if split is None:
            continue
        utterances.append(Utterance(
            id=path.stem,
            audio=path,
            transcript=STATEMENTS[name.statement],
            label=name.valence,
            split=split,
            speaker=f"actor{name.actor:02d}",
        ))
    if not utterances and not failures:
        raise ConfigError("no RAVDESS clips (03-01-EE-II-SS-RR-AA.*) found", root)
    return CorpusScan(tuple(utterances), tuple(failures))


def binary_class(utterance_id: str) -> int | None:
    """1 for positive (calm, happy), 0 for negative (sad, angry, fearful, disgust), None else."""
    emotion = parse_name(utterance_id.rsplit("/", 1)[-1]).emotion
    return 1 if emotion in POSITIVE else 0 if emotion in NEGATIVE else None
