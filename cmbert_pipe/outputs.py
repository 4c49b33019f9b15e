"""Where outputs go: item ids as safe relative paths, and writability checked before any work.

    >>> target = id_path("runs/frames", "spk1/clip", ".csv")   # runs/frames/spk1/clip.csv
    >>> claims = PathClaims(); claims.claim("Clip"); claims.claim("clip")  # -> ConfigError
    >>> ensure_writable_dir("runs/cache")                      # ConfigError now, not after the work

An id becomes a path in one place only (:func:`id_path`), on the way in (reading a TextGrid or a
cache entry named by an id) and on the way out (writing one): an id that is empty, absolute,
holds ``..``/``.`` parts, empty parts, a backslash, a NUL or another control character is
refused with the id named. Two different ids that name the same file on a case-insensitive or
Unicode-normalising file system (``Clip`` / ``clip``, ``é`` composed / decomposed) are refused
by :class:`PathClaims` rather than silently sharing it.
"""

from __future__ import annotations

import os
import tempfile
import unicodedata
from pathlib import Path, PurePosixPath

from cmbert_pipe.errors import ConfigError

MAX_ID_PART_BYTES = 200  # a path component's bytes (file systems allow 255; room for suffixes)


def unsafe_id_reason(item_id: str) -> str | None:
    """Why ``item_id`` cannot name a file below an output folder, or None if it can."""
    if not isinstance(item_id, str) or not item_id:
        return "the id is empty"
    bad = sorted({ch for ch in item_id if ord(ch) < 32 or ord(ch) == 127})
    if bad:
        return f"the id holds control character(s) {', '.join(repr(c) for c in bad)}"
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in item_id):
        return "the id holds bytes that are not valid text (undecodable file name)"
    if "\\" in item_id:
        return "the id holds a backslash"
    if item_id.startswith("/") or (len(item_id) > 1 and item_id[0].isalpha() and item_id[1] == ":"):
        return "the id is an absolute path"
    parts = item_id.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "the id has an empty, '.' or '..' path part"
    if any(len(p.encode("utf-8")) > MAX_ID_PART_BYTES for p in parts):
        return f"a part of the id is longer than {MAX_ID_PART_BYTES} bytes"
    return None


def check_id(item_id: str) -> str:
    """``item_id`` if it is a safe relative path; else :class:`ConfigError` naming it."""
    reason = unsafe_id_reason(item_id)
    if reason is not None:
        raise ConfigError(f"utterance id {item_id!r} cannot be used as a file name: {reason}")
    return item_id


def id_path(root: str | Path, item_id: str, suffix: str = "") -> Path:
    """``root/<item_id><suffix>`` for a checked id (``/`` in an id makes sub-folders).

    Also refuses an id whose path, once links inside ``root`` are followed, leaves ``root``."""
    check_id(item_id)
    rel = PurePosixPath(item_id)
    path = Path(root).joinpath(*rel.parts[:-1], rel.name + suffix)
    root_real = Path(os.path.realpath(root))
    if not Path(os.path.realpath(path)).is_relative_to(root_real):
        raise ConfigError(f"utterance id {item_id!r} leads outside {root} (through a link)",
                          path)
    return path


def _fold(item_id: str) -> str:
    return unicodedata.normalize("NFC", item_id).casefold()


class PathClaims:
    """Remembers which id claimed which file name, to refuse two ids sharing one file."""

    def __init__(self) -> None:
        self._owner: dict[str, str] = {}

    def claim(self, item_id: str) -> None:
        """Record ``item_id``; :class:`ConfigError` if another id maps to the same file."""
        key = _fold(check_id(item_id))
        owner = self._owner.setdefault(key, item_id)
        if owner != item_id:
            raise ConfigError(f"utterance ids {owner!r} and {item_id!r} would share one output "
                              "file (names differ only in case or Unicode form); rename one")


# -- writability -------------------------------------------------------------------------------

def ensure_writable_dir(path: str | Path, what: str = "output folder") -> Path:
    """Create ``path`` (with parents) and prove a file can be created in it, before any work."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path, prefix=".cmbert-write-test-"):
            pass
    except FileExistsError:
        raise ConfigError(f"{what} is a file, not a folder", path) from None
    except OSError as e:
        raise ConfigError(f"{what} is not writable ({e.strerror or e})", path) from None
    return path


def ensure_writable_file(path: str | Path, what: str = "output file") -> Path:
    """Prove ``path`` can be (re)written: its folder accepts new files and, if it exists, it
    is a writable regular file."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} is a folder", path)
    ensure_writable_dir(path.parent, f"folder of the {what}")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{what} is not writable (read-only file)", path)
    return path
