"""Domain errors. Every error names the file (or item) it is about and the reason.

A batch driver catches :class:`CmbertError` per item, records it as an
:class:`~cmbert_pipe.schema.ItemFailure`, and goes on with the rest.
"""

from __future__ import annotations

from pathlib import Path


class CmbertError(Exception):
    """Base class: ``path`` is the offending file (may be None), ``reason`` says why."""

    def __init__(self, reason: str, path: str | Path | None = None):
        self.reason = reason
        self.path = str(path) if path is not None else None
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class AudioError(CmbertError):
    """Audio that cannot be decoded, is empty, silent, or otherwise unusable."""


class TranscriptError(CmbertError):
    """A transcript that is missing, unreadable, empty or has no alignable words."""


class AlignmentError(CmbertError):
    """The aligner could not place the transcript's words in the audio."""


class FeatureError(CmbertError):
    """Acoustic feature extraction failed for this file."""


class CacheError(CmbertError):
    """A cache entry is missing, corrupt or inconsistent."""


class ConfigError(CmbertError):
    """A configuration file or option is invalid (unknown key, wrong type, bad value)."""


class ModelError(CmbertError):
    """A model bundle is missing files or inconsistent."""
