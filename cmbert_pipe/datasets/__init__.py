"""Dataset adapters: each turns a corpus as it lies on disk into utterances with labels/splits.

    >>> scan = load_dataset("ravdess", "/data/ravdess", {"test": [11, 12]})
    >>> scan = load_dataset("mosi", "/data/CMU_MOSI_Raw")
    >>> scan = load_dataset("manifest", "corpus/manifest.csv")
    >>> scan = load_dataset("folder", "corpus/", {"transcripts": "corpus/lab"})

Every adapter returns a :class:`~cmbert_pipe.corpus.CorpusScan`; unusable items are failures,
not exceptions. Options an adapter does not know are a :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

from cmbert_pipe.audio import AUDIO_EXTENSIONS
from cmbert_pipe.corpus import CorpusScan, discover, discover_folder, discover_manifest
from cmbert_pipe.datasets.mosi import load_mosi
from cmbert_pipe.datasets.ravdess import RavdessSplits, load_ravdess, parse_name
from cmbert_pipe.config import DATASET_KINDS
from cmbert_pipe.errors import ConfigError
from cmbert_pipe.schema import Utterance

DATASETS = DATASET_KINDS  # the adapters below, one name each
OPTIONS = {
    "folder": ("transcripts",),
    "manifest": (),
    "ravdess": ("train", "dev", "test"),
    "mosi": ("folds",),
}


def load_dataset(kind: str, path: str | Path, options: dict[str, Any] | None = None) -> CorpusScan:
    """Run the adapter ``kind`` (one of :data:`DATASETS`) on ``path``."""
    options = dict(options or {})
    if kind not in DATASETS:
        raise ConfigError(f"unknown dataset {kind!r} (choose from {', '.join(DATASETS)})")
    unknown = sorted(set(options) - set(OPTIONS[kind]))
    if unknown:
        raise ConfigError(f"unknown option(s) for dataset {kind!r}: {', '.join(unknown)} "
                          f"(known: {', '.join(OPTIONS[kind]) or 'none'})")
    if kind == "folder":
        return discover_folder(path, options.get("transcripts") or None)
    if kind == "manifest":
        return discover_manifest(path)
    if kind == "ravdess":
        defaults = RavdessSplits()
        splits = RavdessSplits(**{name: tuple(int(a) for a in options.get(name, getattr(defaults, name)))
                                  for name in ("train", "dev", "test")})
        return load_ravdess(path, splits)
    return load_mosi(path, options.get("folds") or None)


def discover_corpus(corpus: str | Path, transcripts: str | Path | None = None) -> CorpusScan:
    """A folder of audio with transcripts or a manifest (:func:`cmbert_pipe.corpus.discover`);
    a folder where no audio file has a transcript but every one has a RAVDESS name is read as
    RAVDESS (the name gives the statement), every actor in it kept."""
    scan = discover(corpus, transcripts)
    root = Path(corpus)
    if scan.utterances or transcripts is not None or not root.is_dir():
        return scan
    actors = set()
    for path in root.rglob("*"):
        if path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS:
            try:
                actors.add(parse_name(path.stem).actor)
            except ValueError:
                return scan
    if not actors:
        return scan
    return load_ravdess(root, RavdessSplits(train=tuple(sorted(actors)), dev=(), test=()))


def assign_splits(utterances: tuple[Utterance, ...] | list[Utterance], dev_fraction: float = 0.1,
                  test_fraction: float = 0.1) -> tuple[Utterance, ...]:
    """Give every utterance without a split one, deterministically from a hash of its speaker
    (or id when there is none), so one speaker never lands in two splits."""
    if not 0 <= dev_fraction < 1 or not 0 <= test_fraction < 1 or dev_fraction + test_fraction >= 1:
        raise ConfigError(f"split fractions dev={dev_fraction} test={test_fraction} must be in "
                          "[0, 1) and sum to less than 1")
    out = []
    for u in utterances:
        if u.split is None:
            group = (u.speaker or u.id).encode("utf-8")
            x = int.from_bytes(hashlib.sha256(group).digest()[:8], "big") / 2**64  # [0, 1)
            split = "test" if x < test_fraction else "dev" if x < test_fraction + dev_fraction \
                else "train"
            u = replace(u, split=split)
        out.append(u)
    return tuple(out)


__all__ = ["DATASETS", "CorpusScan", "assign_splits", "discover_corpus", "load_dataset"]
