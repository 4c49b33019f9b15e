"""The aligner interface and the registry of backends (keys feed ``cmbert align --aligner``).

Backends import this module and register themselves; ``cmbert_pipe.align`` imports every
backend and builds one by name (``get_aligner``), so nothing here imports a backend.

    >>> aligner = get_aligner("pocketsphinx", max_duration_s=120)
    >>> aligner.settings()        # backend, version and every parameter: part of cache keys
    >>> alignment = aligner.align(utterance)      # schema.Alignment, or a domain error
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cmbert_pipe.config import ALIGNER_NAMES
from cmbert_pipe.errors import CmbertError
from cmbert_pipe.schema import Alignment, Utterance


class Aligner(ABC):
    """A forced aligner: transcript words -> time intervals in the audio."""

    name: str = ""
    #: True when the backend aligns a whole corpus in one call (MFA) rather than clip by clip.
    corpus_level: bool = False

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """Backend name, version and every parameter that changes the output (JSON-able)."""

    @abstractmethod
    def align(self, utterance: Utterance, wave: np.ndarray | None = None) -> Alignment:
        """Align one utterance. ``wave`` is its (N,) 16 kHz mono audio if already loaded.

        Raises AlignmentError / TranscriptError / AudioError naming the file and the reason.
        """

    def align_corpus_level(
        self,
        utterances: Sequence[Utterance],
        work_dir: Path,
        on_result: Callable[[Utterance, Alignment | CmbertError], None],
    ) -> None:
        """Align many utterances in one go (backends with ``corpus_level``); each result or
        error is handed to ``on_result`` as soon as it is known."""
        for utt in utterances:
            try:
                result: Alignment | CmbertError = self.align(utt)
            except CmbertError as e:
                result = e
            on_result(utt, result)


ALIGNERS: dict[str, Callable[..., Aligner]] = {}


def register(name: str) -> Callable[[type[Aligner]], type[Aligner]]:
    if name not in ALIGNER_NAMES:
        raise ValueError(f"aligner {name!r} is not in cmbert_pipe.config.ALIGNER_NAMES")

    def deco(cls: type[Aligner]) -> type[Aligner]:
        cls.name = name
        ALIGNERS[name] = cls
        return cls

    return deco
