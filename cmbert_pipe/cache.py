"""Content-addressed cache of aligned acoustic tensors.

Layout of a cache folder::

    CACHE/
      cache.json                 what the current index holds: feature set, version, columns, dim
      index.jsonl                one line per utterance: {"utterance": {...}, "record": {...}}
      entries/ab/abcdef....npz   one entry per content key (word_features, words, intervals, ...)

A key is the SHA-256 of the audio bytes, the transcript, and the aligner and extractor
settings and versions (:func:`cmbert_pipe.io.content_key`); changing any of them changes exactly the keys it
touches. Entries are written atomically (temporary file in the same folder, fsync, rename),
so a killed run never leaves a half-written entry under a real name; every entry carries a
checksum of its arrays, and a corrupt entry raises :class:`CacheError` on read.

    >>> cache = FeatureCache("cache/")
    >>> key = content_key(audio_sha256="...", transcript="hello", aligner={...}, features={...})
    >>> cache.put(key, {"word_features": feats}, meta={"feature_set": "covarep74"})
    >>> entry = cache.get(key); entry.arrays["word_features"].shape   # (n_words, 74)
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cmbert_pipe.errors import CacheError
from cmbert_pipe.io import atomic_write_bytes, atomic_write_text, canonical_json
from cmbert_pipe.outputs import unsafe_id_reason
from cmbert_pipe.schema import FeatureRecord, Utterance

CACHE_FORMAT = 1
META_KEY = "__meta__"


def _is_key(key: object) -> bool:
    """A content key is a plain token (hex digest): never a path with separators or dots."""
    return isinstance(key, str) and re.fullmatch(r"[0-9A-Za-z_-]{8,128}", key) is not None


def _arrays_checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    key: str
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]


class FeatureCache:
    """A folder of content-addressed ``.npz`` entries plus an index of utterances."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # -- entries ----------------------------------------------------------------------------
    def entry_path(self, key: str) -> Path:
        if not _is_key(key):  # a key read from a file must not become an arbitrary path
            raise CacheError(f"not a cache key: {key!r} (expected a hex digest)", self.root)
        return self.root / "entries" / key[:2] / f"{key}.npz"

    def relpath(self, key: str) -> str:
        return self.entry_path(key).relative_to(self.root).as_posix()

    def has(self, key: str) -> bool:
        """True if a readable, uncorrupted entry exists for ``key``."""
        if not _is_key(key) or not self.entry_path(key).is_file():
            return False
        try:
            self.get(key)
        except CacheError:
            return False
        return True

    def put(self, key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
        """Store ``arrays`` (and JSON-able ``meta``) under ``key``, atomically."""
        import io

        meta = dict(meta, key=key, format=CACHE_FORMAT, checksum=_arrays_checksum(arrays))
        buf = io.BytesIO()
        payload = {name: np.asarray(a) for name, a in arrays.items()}
        payload[META_KEY] = np.frombuffer(canonical_json(meta).encode("utf-8"), dtype=np.uint8)
        np.savez(buf, **payload)
        path = self.entry_path(key)
        atomic_write_bytes(path, buf.getvalue())
        return path

    def get(self, key: str) -> CacheEntry:
        """Read the entry for ``key``; :class:`CacheError` if missing or corrupt."""
        path = self.entry_path(key)
        if not path.is_file():
            raise CacheError("cache entry missing", path)
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files if name != META_KEY}
                meta = json.loads(npz[META_KEY].tobytes().decode("utf-8"))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
            raise CacheError(f"corrupt cache entry ({type(e).__name__}: {e})", path) from None
        if meta.get("checksum") != _arrays_checksum(arrays):
            raise CacheError("corrupt cache entry (checksum mismatch)", path)
        if meta.get("key") != key:  # a file copied or renamed onto another key's path
            raise CacheError(f"corrupt cache entry (holds key {meta.get('key')!r})", path)
        return CacheEntry(key, arrays, meta)

    def discard(self, key: str) -> None:
        try:
            self.entry_path(key).unlink()
        except FileNotFoundError:
            pass

    # -- index ------------------------------------------------------------------------------
    @property
    def index_path(self) -> Path:
        return self.root / "index.jsonl"

    @property
    def info_path(self) -> Path:
        return self.root / "cache.json"

    def write_index(
        self, rows: Iterable[tuple[Utterance, FeatureRecord]], info: dict[str, Any]
    ) -> None:
        """Replace the index (atomically) with ``rows``; ``info`` describes the feature set."""
        lines = [
            canonical_json({"utterance": u.to_dict(), "record": r.to_dict()}) for u, r in rows
        ]
        atomic_write_text(self.index_path, "".join(line + "\n" for line in lines))
        atomic_write_text(self.info_path, json.dumps(dict(info, format=CACHE_FORMAT), indent=2))

    def info(self) -> dict[str, Any]:
        if not self.info_path.is_file():
            raise CacheError("not a feature cache (no cache.json); run `cmbert extract-audio`",
                             self.root)
        return json.loads(self.info_path.read_text(encoding="utf-8"))

    def read_index(self) -> list[tuple[Utterance, FeatureRecord]]:
        if not self.index_path.is_file():
            raise CacheError("not a feature cache (no index.jsonl); run `cmbert extract-audio`",
                             self.root)
        rows = []
        for lineno, line in enumerate(self.index_path.read_text(encoding="utf-8").splitlines()):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                utt = Utterance.from_dict(d["utterance"])
                rec = FeatureRecord.from_dict(d["record"])
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise CacheError(f"index line {lineno + 1} unreadable: {e}",
                                 self.index_path) from None
            bad = unsafe_id_reason(utt.id) or (None if _is_key(rec.key) else "bad cache key")
            if bad is not None:
                raise CacheError(f"index line {lineno + 1}: utterance {utt.id!r} refused: {bad}",
                                 self.index_path)
            rows.append((utt, rec))
        return rows


@dataclass(frozen=True)
class AlignedExample:
    """What the trainer consumes: an utterance, its aligned words and their audio vectors."""

    utterance: Utterance
    words: tuple[str, ...]
    word_features: np.ndarray  # (n_words, dim) float32


def iter_examples(cache_root: str | Path) -> Iterator[AlignedExample]:
    """Every utterance of the cache's index with its word-pooled features."""
    cache = FeatureCache(cache_root)
    for utt, rec in cache.read_index():
        entry = cache.get(rec.key)
        feats = np.asarray(entry.arrays["word_features"], dtype=np.float32)
        words = tuple(str(w) for w in entry.arrays["words"])
        yield AlignedExample(utt, words, feats)
