"""The extract stage: utterances + their alignments -> word-pooled acoustic features in a cache.

    >>> from cmbert_pipe.extract import extract_corpus
    >>> summary = extract_corpus(scan.utterances, "runs/align", "runs/cache",
    ...                          feature_set="egemaps", jobs=2)
    >>> summary.done, summary.skipped, summary.failures

For every utterance: read its TextGrid (``ALIGNMENTS/<id>.TextGrid``), decode the audio once
(16 kHz mono), compute the feature set's frames on the 10 ms grid, average them per aligned word
(:func:`cmbert_pipe.acoustic.pool_words`), and store the result under a content key made from

- the SHA-256 of the audio bytes and the transcript,
- the SHA-256 of the TextGrid, and the aligner's name and settings from its sidecar
  (``<id>.align.json``, written by ``cmbert align``; MFA TextGrids dropped in have none),
- the feature set's name, version and parameters.

An entry whose key is present and readable is skipped (a killed run resumes where it stopped);
``force`` recomputes everything; a corrupt entry is reported and recomputed; ``keep_frames``
also stores the (T, D) frame matrix, and an entry without frames is recomputed when frames are
asked for. Each item fails on its own (bad audio, missing TextGrid, no word inside the audio);
the rest go on. At the end the index (``index.jsonl``) lists every utterance that has an entry,
and ``cache.json`` describes the feature set (name, version, parameters, columns).
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cmbert_pipe.acoustic import extract_frames, get_feature_set, pool_words, words_without_frames
from cmbert_pipe.align.driver import alignment_path, load_alignment, sidecar_path, stale_reason
from cmbert_pipe.audio import MAX_DURATION_S, check_duration, load_audio, too_long_reason
from cmbert_pipe.batch import Check, Executor, ItemKey, ProgressCallback, run_stage
from cmbert_pipe.cache import META_KEY, CacheEntry, FeatureCache
from cmbert_pipe.errors import AlignmentError, AudioError, CacheError, FeatureError
from cmbert_pipe.io import atomic_write_bytes, atomic_write_text, file_digest, read_json
from cmbert_pipe.outputs import PathClaims, ensure_writable_dir, id_path
from cmbert_pipe.schema import (
    FRAME_HOP_S,
    FRAME_OFFSET_S,
    SAMPLE_RATE,
    BatchSummary,
    FeatureRecord,
    Utterance,
)

log = logging.getLogger(__name__)

STAGE = "extract"
STALE_TEMP_S = 600.0  # s: temp files older than this are leftovers of a killed run
OVERHANG_WARN_S = 0.5  # s: alignment reaching this far past the audio's end is worth a warning
EXPORT_FORMATS = ("csv", "npz")


def textgrid_path(alignments_dir: str | Path, utterance: Utterance) -> Path:
    """Where the align stage puts ``utterance``'s TextGrid."""
    return alignment_path(alignments_dir, utterance.id)


def alignment_key_part(alignments_dir: str | Path, utterance: Utterance) -> dict[str, Any]:
    """What of the alignment enters the key: the TextGrid's bytes, and the aligner's name and
    settings from the align stage's sidecar (``<id>.align.json``) when there is one."""
    tg = textgrid_path(alignments_dir, utterance)
    if not tg.is_file():
        raise AlignmentError(
            f"no alignment for {utterance.id!r} (expected {tg.name}); run `cmbert align` first",
            tg,
        )
    part: dict[str, Any] = {"textgrid_sha256": file_digest(tg)}
    side_path = sidecar_path(alignments_dir, utterance.id)
    if side_path.is_file():
        try:
            side = json.loads(side_path.read_text(encoding="utf-8"))
            part["aligner"] = {"name": side.get("aligner_name"), "settings": side.get("aligner")}
        except (ValueError, AttributeError):
            part["sidecar_sha256"] = file_digest(side_path)
    return part


def check_alignment_current(alignments_dir: Path, utterance: Utterance,
                            audio_sha256: str) -> None:
    """:class:`AlignmentError` if the align stage's sidecar says its TextGrid was made for
    another transcript or other audio bytes than the ones about to be extracted."""
    side = read_json(sidecar_path(alignments_dir, utterance.id))
    if isinstance(side, dict):  # no sidecar (MFA TextGrids dropped in): nothing to compare
        stale = stale_reason(side, utterance, audio_sha256)
        if stale is not None:
            raise AlignmentError(stale, textgrid_path(alignments_dir, utterance))


@dataclass(frozen=True)
class ExtractTask:
    """One utterance to compute (picklable: handed to a worker process)."""

    utterance: Utterance
    alignments_dir: Path
    cache_root: Path
    key: str
    feature_set: str
    keep_frames: bool
    audio_sha256: str
    key_parts: tuple[tuple[str, str], ...] = ()  # ItemKey.parts, recorded in the entry's meta
    max_duration_s: float = MAX_DURATION_S


def extract_one(task: ExtractTask) -> FeatureRecord:
    """Compute and store one entry; raises a :class:`CmbertError` naming the file on failure."""
    utt = task.utterance
    fs = get_feature_set(task.feature_set)
    alignment = load_alignment(task.alignments_dir, utt, task.audio_sha256)
    words = tuple(alignment.words)
    if not words:
        raise AlignmentError("alignment has no words", textgrid_path(task.alignments_dir, utt))
    check_duration(utt.audio, task.max_duration_s)  # before decoding a huge file
    wave = load_audio(utt.audio)  # (N,) float32 at 16 kHz
    duration_s = wave.shape[0] / SAMPLE_RATE
    if duration_s > task.max_duration_s:
        raise AudioError(too_long_reason(duration_s, task.max_duration_s), utt.audio)
    t0 = time.process_time()
    try:
        frames = extract_frames(wave, SAMPLE_RATE, fs.name)  # (T, D)
    except FeatureError as e:
        raise FeatureError(e.reason, utt.audio) from None
    except (ValueError, ArithmeticError, IndexError, np.linalg.LinAlgError) as e:
        # numeric failure inside an extractor: report it against the file, keep the traceback
        raise FeatureError(f"{fs.name} failed: {type(e).__name__}: {e}", utt.audio) from e
    cpu_s = time.process_time() - t0
    if frames.shape[0] == 0 or not np.any(frames):
        raise FeatureError(f"{fs.name} produced no non-zero frame for this audio", utt.audio)
    pooled = pool_words(frames, words)  # (n_words, D)
    empty = words_without_frames(words, frames.shape[0])  # (n_words,)
    tg = textgrid_path(task.alignments_dir, utt)
    if empty.all():
        raise AlignmentError(
            f"no aligned word lies inside the audio (words {words[0].start_s:.2f}–"
            f"{words[-1].end_s:.2f} s, audio {duration_s:.2f} s): wrong TextGrid for this clip?",
            tg,
        )
    overhang_s = words[-1].end_s - duration_s
    if overhang_s > OVERHANG_WARN_S:
        log.warning("%s: alignment ends %.2f s after the audio; %d word(s) get zeros",
                    tg, overhang_s, int(empty.sum()))
    arrays = {
        "word_features": pooled.astype(np.float32),  # (n_words, D)
        "words": np.array([w.word for w in words], dtype=np.str_),  # (n_words,)
        "word_start_s": np.array([w.start_s for w in words], dtype=np.float64),
        "word_end_s": np.array([w.end_s for w in words], dtype=np.float64),
    }
    if task.keep_frames:
        arrays["frames"] = frames  # (T, D)
    meta = {
        "utterance_id": utt.id,
        "audio_sha256": task.audio_sha256,
        "transcript": utt.transcript,
        "aligner": alignment.aligner,
        "align_method": alignment.method,
        "align_quality": alignment.quality,
        "feature_set": fs.describe(),
        "n_frames": int(frames.shape[0]),
        "n_words_without_frames": int(empty.sum()),
        "duration_s": duration_s,
        "cpu_s": cpu_s,
        "key_parts": dict(task.key_parts),
    }
    cache = FeatureCache(task.cache_root)
    cache.put(task.key, arrays, meta)
    return FeatureRecord(
        utterance_id=utt.id,
        key=task.key,
        path=cache.relpath(task.key),
        feature_set=fs.name,
        feature_version=fs.version,
        dim=fs.dim,
        n_words=len(words),
        n_frames=int(frames.shape[0]),
        frame_hop_s=FRAME_HOP_S,
        align_method=alignment.method,
        align_quality=alignment.quality,
    )


def _record_from_entry(cache: FeatureCache, utt: Utterance, key: str, fs_name: str,
                       fs_version: str, entry: CacheEntry) -> FeatureRecord:
    feats = entry.arrays["word_features"]
    return FeatureRecord(
        utterance_id=utt.id,
        key=key,
        path=cache.relpath(key),
        feature_set=fs_name,
        feature_version=fs_version,
        dim=int(feats.shape[1]),
        n_words=int(feats.shape[0]),
        n_frames=int(entry.meta.get("n_frames", 0)),
        frame_hop_s=FRAME_HOP_S,
        align_method=str(entry.meta.get("align_method") or ""),
        align_quality=entry.meta.get("align_quality"),
    )


def sweep_stale_temps(cache: FeatureCache, older_than_s: float = STALE_TEMP_S) -> int:
    """Delete temp files a killed run left in the cache (never read as entries); return count."""
    entries = cache.root / "entries"
    if not entries.is_dir():
        return 0
    now = time.time()
    removed = 0
    for tmp in entries.rglob(".*.tmp"):
        try:
            if now - tmp.stat().st_mtime > older_than_s:
                tmp.unlink()
                removed += 1
        except FileNotFoundError:
            pass
    if removed:
        log.info("removed %d temp file(s) left by an interrupted run", removed)
    return removed


def _extract_item(alignments_dir: Path, cache_root: Path, feature_set: str, keep_frames: bool,
                  max_duration_s: float, utt: Utterance, key: ItemKey) -> FeatureRecord:
    """Worker: compute one utterance's entry (the audio's digest is taken again here, from the
    bytes actually decoded)."""
    return extract_one(ExtractTask(utt, alignments_dir, cache_root, key.digest, feature_set,
                                   keep_frames, file_digest(utt.audio),
                                   tuple(sorted(key.parts.items())), max_duration_s))


def _recorded_meta(cache: FeatureCache, key: str) -> dict[str, Any]:
    """The meta of an entry without loading its arrays ({} when unreadable)."""
    try:
        with np.load(cache.entry_path(key), allow_pickle=False) as npz:
            return json.loads(npz[META_KEY].tobytes().decode("utf-8"))
    except Exception:  # noqa: BLE001 - only used to explain a recomputation
        return {}


def _previous_keys(cache: FeatureCache) -> dict[str, str]:
    """Utterance id -> key in the index of a previous run ({} when there is none)."""
    try:
        return {u.id: r.key for u, r in cache.read_index()}
    except CacheError:
        return {}


def extract_corpus(
    utterances: Sequence[Utterance],
    alignments_dir: str | Path,
    cache_dir: str | Path,
    feature_set: str = "covarep74",
    jobs: int = 1,
    force: bool = False,
    keep_frames: bool = False,
    on_progress: ProgressCallback | None = None,
    *,
    executor: Executor | None = None,
    max_duration_s: float = MAX_DURATION_S,
) -> BatchSummary:
    """Extract, pool and cache every utterance; write the index. See the module docstring.

    A recording longer than ``max_duration_s`` fails (the same limit the aligner applies).

    ``on_progress(done, failed, total)`` is called as items finish (skipped ones count as done).
    Work runs on ``executor`` (see :func:`cmbert_pipe.batch.open_executor`), else on ``jobs``
    local processes. Returns the :class:`BatchSummary`; the index lists every utterance with
    an entry.
    """
    fs = get_feature_set(feature_set)  # ConfigError for an unknown set, before any work
    alignments_dir = Path(alignments_dir)
    cache = FeatureCache(ensure_writable_dir(cache_dir, "cache folder"))  # before any work
    sweep_stale_temps(cache)
    previous = _previous_keys(cache)
    records: dict[str, FeatureRecord] = {}

    def key(utt: Utterance) -> ItemKey:
        if not Path(utt.audio).is_file():
            raise AudioError("audio file not found", utt.audio)
        audio_sha256 = file_digest(utt.audio)
        check_alignment_current(alignments_dir, utt, audio_sha256)  # stale: refused, with why
        return ItemKey.of(audio_sha256=audio_sha256, transcript=utt.transcript,
                          alignment=alignment_key_part(alignments_dir, utt),
                          features=fs.key_part())

    def is_current(utt: Utterance, k: ItemKey) -> Check:
        if cache.entry_path(k.digest).is_file():
            try:
                entry = cache.get(k.digest)
            except CacheError as e:
                log.warning("%s; recomputing it", e)
                cache.discard(k.digest)
                return Check(False, ("corrupt entry",))
            if keep_frames and "frames" not in entry.arrays:
                return Check(False, ("frames asked for",))
            records[utt.id] = _record_from_entry(cache, utt, k.digest, fs.name, fs.version,
                                                 entry)
            return Check(True)
        old = previous.get(utt.id)
        if old is None:
            return Check.missing()
        return Check.against(k, old, _recorded_meta(cache, old).get("key_parts"))

    def keep(utt: Utterance, _k: ItemKey, record: FeatureRecord) -> None:
        records[utt.id] = record

    summary = run_stage(
        utterances, key, is_current,
        functools.partial(_extract_item, alignments_dir, cache.root, fs.name, keep_frames,
                          max_duration_s),
        keep, on_progress, stage=STAGE, item_id=lambda u: u.id, executor=executor, jobs=jobs,
        force=force)
    rows = [(u, records[u.id]) for u in utterances if u.id in records]
    cache.write_index(rows, info=dict(fs.describe(), n_utterances=len(rows),
                                      alignments_dir=str(alignments_dir)))
    return summary


# -- export -----------------------------------------------------------------------------------

def export_frames(cache_dir: str | Path, out_dir: str | Path, fmt: str = "csv") -> list[Path]:
    """Write every indexed utterance's frames to ``out_dir/<id>.csv`` or ``.npz``.

    CSV: a header of the feature set's column names (COVAREP order for covarep74), one row per
    10 ms frame (row k centred at 5 ms + 10 ms·k), as the COVAREP reference files are laid out.
    NPZ: ``frames`` (T, D) float32, ``columns`` (D,), ``frame_centre_s`` (T,), and the word
    features. Raises :class:`CacheError` if an entry was made without ``--frames``.
    """
    if fmt not in EXPORT_FORMATS:
        raise CacheError(f"unknown export format {fmt!r} (choose {', '.join(EXPORT_FORMATS)})")
    cache = FeatureCache(cache_dir)
    columns = tuple(cache.info().get("columns", ()))
    rows = cache.read_index()  # ids checked as it is read
    out_dir = ensure_writable_dir(out_dir)
    claims = PathClaims()
    for utt, _ in rows:
        claims.claim(utt.id)  # two ids sharing one file: refused before anything is written
    written: list[Path] = []
    for utt, rec in rows:
        entry = cache.get(rec.key)
        if "frames" not in entry.arrays:
            raise CacheError(
                f"entry of {utt.id!r} holds no frames; re-run `cmbert extract-audio --frames`",
                cache.entry_path(rec.key),
            )
        frames = np.asarray(entry.arrays["frames"], dtype=np.float32)  # (T, D)
        cols = tuple(entry.meta.get("feature_set", {}).get("columns", columns))
        target = id_path(out_dir, utt.id, f".{fmt}")
        if fmt == "csv":
            atomic_write_text(target, _frames_csv(frames, cols))
        else:
            import io

            buf = io.BytesIO()
            np.savez(
                buf,
                frames=frames,
                columns=np.array(cols, dtype=np.str_),
                frame_centre_s=FRAME_OFFSET_S + FRAME_HOP_S * np.arange(frames.shape[0]),
                word_features=entry.arrays["word_features"],
                words=entry.arrays["words"],
                word_start_s=entry.arrays["word_start_s"],
                word_end_s=entry.arrays["word_end_s"],
            )
            atomic_write_bytes(target, buf.getvalue())
        written.append(target)
    return written


def _frames_csv(frames: np.ndarray, columns: Sequence[str]) -> str:
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in frames:
        writer.writerow([f"{v:.9g}" for v in row])
    return buf.getvalue()
