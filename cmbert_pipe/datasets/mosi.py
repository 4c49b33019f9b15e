"""CMU-MOSI (Zadeh et al., IEEE Intelligent Systems 2016) from its raw release layout.

The adapter reads the release as a researcher has it on disk::

    CMU_MOSI_Raw/
      Audio/WAV_16000/Segmented/<video>_<n>.wav     one clip per opinion segment (2199)
      Transcript/Segmented/<video>.annotprocessed   lines "<n>_DELIM_<TEXT>" (upper case)
      Labels/OpinionLevelSentiment.csv              no header: start_s, end_s, video, n, label

and gives one :class:`~cmbert_pipe.schema.Utterance` per labelled segment, id ``<video>_<n>``,
label in [-3, 3], split from the standard folds (52 / 10 / 31 videos -> 1284 / 229 / 686
segments; :mod:`cmbert_pipe.datasets.mosi_folds`, or a ``folds.json`` of your own), speaker =
video. Transcripts are kept as released (upper case, disfluencies, "XXX"), whitespace collapsed.

    >>> scan = load_mosi("/data/CMU_MOSI_Raw")
    >>> scan = load_mosi("/data/CMU_MOSI_Raw", folds="my_folds.json")
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cmbert_pipe.datasets.mosi_folds as mosi_folds
from cmbert_pipe.corpus import CorpusScan
from cmbert_pipe.errors import ConfigError
from cmbert_pipe.schema import SPLITS, ItemFailure, Utterance

AUDIO_DIR = Path("Audio/WAV_16000/Segmented")
TRANSCRIPT_DIR = Path("Transcript/Segmented")
LABELS_CSV = Path("Labels/OpinionLevelSentiment.csv")
TRANSCRIPT_SUFFIX = ".annotprocessed"
DELIM = "_DELIM_"


def standard_folds() -> dict[str, tuple[str, ...]]:
    return {"train": mosi_folds.TRAIN_VIDEOS, "dev": mosi_folds.DEV_VIDEOS,
            "test": mosi_folds.TEST_VIDEOS}


def read_folds(path: str | Path) -> dict[str, tuple[str, ...]]:
    """A ``folds.json`` ({"train": [video, ...], "dev": [...], "test": [...]})."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read folds: {e}", path) from None
    if not isinstance(data, dict) or set(data) != set(SPLITS):
        raise ConfigError(f"folds must have exactly the keys {SPLITS}", path)
    return {k: tuple(str(v) for v in data[k]) for k in SPLITS}


def read_segment_transcripts(path: Path) -> dict[int, str]:
    """``<n>_DELIM_<TEXT>`` lines -> {n: text}; malformed lines raise ConfigError."""
    texts: dict[int, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        n, sep, text = line.strip().partition(DELIM)
        if not sep or not n.strip().isdigit():
            raise ConfigError(f"line {lineno}: expected '<n>{DELIM}<text>'", path)
        texts[int(n)] = " ".join(text.split())
    return texts


def load_mosi(root: str | Path, folds: str | Path | None = None) -> CorpusScan:
    """Every labelled segment of the release at ``root`` (see the module docstring)."""
    root = Path(root)
    labels_csv = root / LABELS_CSV
    if not labels_csv.is_file():
        raise ConfigError(
            f"not a CMU-MOSI raw release: {LABELS_CSV} missing (expected layout: "
            f"{AUDIO_DIR}/<video>_<n>.wav, {TRANSCRIPT_DIR}/<video>{TRANSCRIPT_SUFFIX}, "
            f"{LABELS_CSV})", root)
    split_of = {video: split for split, videos in
                (read_folds(folds) if folds else standard_folds()).items() for video in videos}
    transcripts: dict[str, dict[int, str] | ConfigError] = {}
    utterances: list[Utterance] = []
    failures: list[ItemFailure] = []
    with open(labels_csv, newline="", encoding="utf-8-sig") as fh:
        rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    for lineno, row in enumerate(rows, 1):
        where = f"{labels_csv}:{lineno}"
        try:
            _start_s, _end_s, video, n, label = (c.strip() for c in row)
            n_int, label_f = int(n), float(label)
        except ValueError:
            failures.append(ItemFailure(where, where, "load",
                                        "expected 5 columns start_s,end_s,video,n,sentiment",
                                        "ConfigError"))
            continue
        uid = f"{video}_{n_int}"
        audio = root / AUDIO_DIR / f"{uid}.wav"
        split = split_of.get(video)
        if split is None:
            failures.append(ItemFailure(uid, where, "load", f"video {video} is in no fold",
                                        "ConfigError"))
            continue
        if video not in transcripts:
            tpath = root / TRANSCRIPT_DIR / f"{video}{TRANSCRIPT_SUFFIX}"
            try:
                if not tpath.is_file():
                    raise ConfigError("transcript file not found", tpath)
                transcripts[video] = read_segment_transcripts(tpath)
            except ConfigError as e:
                transcripts[video] = e
        texts = transcripts[video]
        if isinstance(texts, ConfigError):
            failures.append(ItemFailure(uid, texts.path, "load", texts.reason, "TranscriptError"))
            continue
        text = texts.get(n_int, "")
        if not text:
            failures.append(ItemFailure(
                uid, str(root / TRANSCRIPT_DIR / f"{video}{TRANSCRIPT_SUFFIX}"), "load",
                f"no transcript for segment {n_int}", "TranscriptError"))
            continue
        if not audio.is_file():
            failures.append(ItemFailure(uid, str(audio), "load", "audio file not found",
                                        "AudioError"))
            continue
        utterances.append(Utterance(uid, audio, text, label=max(-3.0, min(3.0, label_f)),
                                    split=split, speaker=video,
                                    transcript_path=root / TRANSCRIPT_DIR /
                                    f"{video}{TRANSCRIPT_SUFFIX}"))
    return CorpusScan(tuple(utterances), tuple(failures))
