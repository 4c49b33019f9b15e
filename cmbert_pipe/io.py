"""Files written so that a killed run never leaves half of one, and the content keys that say
whether a stored result is still current.

    >>> atomic_write_text("out/report.md", text)        # readers see the old file or the new one
    >>> content_key(audio_sha256=file_digest(wav), transcript="hello", aligner={...})  # 64 hex
    >>> short_key({"epochs": 3})                                                        # 16 hex

Every key of the project (alignment sidecars, feature-cache entries, prediction records, stage
fingerprints) is SHA-256 over :func:`canonical_json` of its parts, so the same parts give the
same key on every machine and Python version.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no spaces: the one text that content keys are computed over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_key(**parts: Any) -> str:
    """SHA-256 (64 hex) over the canonical JSON of ``parts`` (digests, transcript, settings)."""
    return hashlib.sha256(canonical_json(parts).encode("utf-8")).hexdigest()


def short_key(obj: Any) -> str:
    """The first 16 hex of SHA-256 over the canonical JSON of ``obj``: a fingerprint to record
    beside a result and compare later (stage fingerprints, which part of a key changed)."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:16]


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def current_umask() -> int:
    """The process umask (read from /proc where possible: setting it is not thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Permissions of a new file under the umask (what ``open(path, "w")`` would give)."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """Permissions of a new folder under the umask (what ``mkdir`` would give)."""
    return 0o777 & ~current_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsync and a
    rename: readers see the old file or the whole new one, never a part. The file gets the
    permissions the umask gives a new file (not the temporary file's 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), file_mode())
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` as UTF-8 (newlines written as given)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def read_json(path: str | Path) -> dict[str, Any] | None:
    """A JSON file's object, or None when it is missing or unreadable (a record to redo)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
