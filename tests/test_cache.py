"""The content-addressed cache: atomic writes under a real kill, corrupt-entry detection, keys."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cmbert_pipe.cache import FeatureCache
from cmbert_pipe.errors import CacheError
from cmbert_pipe.io import content_key as make_key
from cmbert_pipe.schema import FeatureRecord, Utterance

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def cache(tmp_path) -> FeatureCache:
    return FeatureCache(tmp_path / "cache")


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "word_features": rng.normal(size=(7, 74)).astype(np.float32),
        "words": np.array(["a", "bb", "ccc", "d", "e", "f", "g"], dtype=np.str_),
    }


def test_round_trip_keeps_arrays_and_meta(cache):
    key = make_key(x=1)
    arrays = _arrays()
    cache.put(key, arrays, {"feature_set": {"name": "egemaps"}})
    entry = cache.get(key)
    np.testing.assert_array_equal(entry.arrays["word_features"], arrays["word_features"])
    assert entry.arrays["words"].tolist() == arrays["words"].tolist()
    assert entry.meta["feature_set"] == {"name": "egemaps"} and entry.meta["key"] == key
    assert cache.has(key) and not cache.has(make_key(x=2))


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_corrupt_entries_are_detected(cache, damage):
    key = make_key(x=damage)
    path = cache.put(key, _arrays(), {})
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip":
        raw[len(raw) // 3] ^= 0xFF  # inside the word_features data
    elif damage == "garbage":
        raw = bytearray(b"not an npz at all" * 10)
    else:
        raw = bytearray()
    path.write_bytes(bytes(raw))
    with pytest.raises(CacheError, match="corrupt cache entry") as err:
        cache.get(key)
    assert str(path) in str(err.value)
    assert not cache.has(key)


def test_entry_under_the_wrong_key_is_corrupt(cache):
    """An entry copied or renamed to another key's path must not be read back as that key."""
    a, b = make_key(x="a"), make_key(x="b")
    path_a = cache.put(a, _arrays(1), {})
    cache.entry_path(b).parent.mkdir(parents=True, exist_ok=True)
    cache.entry_path(b).write_bytes(path_a.read_bytes())
    with pytest.raises(CacheError, match="key"):
        cache.get(b)


_WRITER = r"""
import sys, numpy as np
from cmbert_pipe.cache import FeatureCache
from cmbert_pipe.io import content_key as make_key
cache = FeatureCache(sys.argv[1])
big = {"word_features": np.ones((2000, 1000), np.float32)}  # 8 MB per entry
print("ready", flush=True)
i = 0
while True:
    cache.put(make_key(i=i), big, {"i": i})
    i += 1
"""


def test_killed_writer_never_leaves_a_readable_half_entry(cache):
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(cache.root)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(1.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    entries = sorted((cache.root / "entries").rglob("*.npz"))
    assert entries, "the writer wrote nothing in 1.5 s"
    for path in entries:  # everything under a real name is whole
        entry = cache.get(path.stem)
        assert entry.arrays["word_features"].shape == (2000, 1000)
    # Leftover temp files (if the kill hit a write) are never mistaken for entries.
    for tmp in (cache.root / "entries").rglob(".*.tmp"):
        assert not cache.has(tmp.name)


def test_keys_are_canonical_and_change_with_every_part():
    base = {"audio_sha256": "ab", "transcript": "hi there",
            "alignment": {"textgrid_sha256": "cd", "settings": {"beam": 10}},
            "features": {"name": "egemaps", "version": "1", "params": {"a": 1, "b": 2}}}
    key = make_key(**base)
    reordered = dict(reversed(list(base.items())))
    reordered["features"] = {"params": {"b": 2, "a": 1}, "version": "1", "name": "egemaps"}
    assert make_key(**reordered) == key
    changes = [
        ("audio_sha256", "ac"),
        ("transcript", "hi there!"),
        ("alignment", {"textgrid_sha256": "cd", "settings": {"beam": 11}}),
        ("features", dict(base["features"], version="2")),
        ("features", dict(base["features"], params={"a": 1, "b": 3})),
    ]
    keys = {make_key(**dict(base, **{part: value})) for part, value in changes}
    assert len(keys) == len(changes) and key not in keys


def test_index_round_trip_and_unreadable_line(cache):
    utt = Utterance("spk/clip", Path("/x/clip.wav"), "hello world", label=1.5, split="dev")
    rec = FeatureRecord("spk/clip", "k" * 64, "entries/kk/k.npz", "egemaps", "v", 25, 2, 100)
    cache.write_index([(utt, rec)], {"name": "egemaps"})
    assert cache.read_index() == [(utt, rec)]
    assert cache.info()["name"] == "egemaps"
    cache.index_path.write_text(cache.index_path.read_text() + "{broken\n")
    with pytest.raises(CacheError, match="index line 2"):
        cache.read_index()
    with pytest.raises(CacheError, match="not a feature cache"):
        FeatureCache(cache.root / "nowhere").info()
