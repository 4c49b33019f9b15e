"""Where outputs go: item ids as safe relative paths, writability checked before any work,
atomic writes that honour the user's umask.

    >>> target = id_path("runs/frames", "spk1/clip", ".csv")   # runs/frames/spk1/clip.csv
    >>> claims = PathClaims(); claims.claim("Clip"); claims.claim("clip")  # -> ConfigError
    >>> ensure_writable_dir("runs/cache")                      # ConfigError now, not after the work
    >>> atomic_write_text("runs/cache/index.jsonl", "...")     # old file or whole new one

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


# -- atomic writes -----------------------------------------------------------------------------

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
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one; the
    file gets the permissions the umask gives a new file (not the temp file's 0600)."""
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
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))
