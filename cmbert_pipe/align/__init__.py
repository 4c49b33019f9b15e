"""Forced alignment: transcript words -> time intervals, written as Praat TextGrids.

    >>> from cmbert_pipe.align import get_aligner, align_corpus, load_alignment
    >>> summary = align_corpus(utterances, "aligned/", get_aligner("pocketsphinx"), jobs=2)
    >>> alignment = load_alignment("aligned/", utterances[0])   # schema.Alignment

Backends register in :data:`ALIGNERS` (``pocketsphinx``: offline, default; ``mfa``: the
Montreal Forced Aligner when installed). Output layout: ``DIR/<utterance.id>.TextGrid``
(+ a ``.align.json`` sidecar holding the key that makes re-runs skip it) and
``DIR/summary.json``.
"""

from cmbert_pipe.align import mfa as _mfa  # noqa: F401  (registers)
from cmbert_pipe.align import pocketsphinx_backend as _ps  # noqa: F401  (registers)
from cmbert_pipe.align.base import ALIGNERS, Aligner
from cmbert_pipe.align.driver import align_corpus, alignment_key, alignment_path, load_alignment
from cmbert_pipe.align.textgrid import read_textgrid, write_textgrid
from cmbert_pipe.errors import ConfigError


def get_aligner(name: str, **options) -> Aligner:
    """The backend registered as ``name`` built with ``options`` (unknown ones are rejected)."""
    if name not in ALIGNERS:
        raise ConfigError(f"unknown aligner {name!r} (choose from: {', '.join(sorted(ALIGNERS))})")
    try:
        return ALIGNERS[name](**options)
    except TypeError as e:
        raise ConfigError(f"aligner {name!r}: {e}") from None


__all__ = [
    "ALIGNERS",
    "Aligner",
    "align_corpus",
    "alignment_key",
    "alignment_path",
    "get_aligner",
    "load_alignment",
    "read_textgrid",
    "write_textgrid",
]
