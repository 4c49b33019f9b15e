"""Align a corpus into a folder of TextGrids, resumably, failing per utterance.

    >>> summary = align_corpus(utterances, "aligned/", get_aligner("pocketsphinx"), jobs=2)
    >>> summary.to_dict()        # also written to aligned/summary.json

Layout: ``OUT/<utterance.id>.TextGrid`` (ids with ``/`` make sub-folders) and beside each a
sidecar ``OUT/<utterance.id>.align.json`` holding the key (SHA-256 over the audio bytes'
digest, the transcript and the aligner's settings). The TextGrid is written first and the
sidecar last, each atomically, so a sidecar whose key matches proves a complete, current
TextGrid: a re-run skips it, a killed run loses nothing it finished, ``force`` redoes all.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from cmbert_pipe.align.base import Aligner
from cmbert_pipe.align.textgrid import atomic_write_text, read_textgrid, write_textgrid
from cmbert_pipe.audio import file_digest
from cmbert_pipe.batch import run_batch
from cmbert_pipe.errors import AlignmentError, AudioError, CmbertError
from cmbert_pipe.schema import Alignment, BatchSummary, ItemFailure, Utterance

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".align.json"
SUMMARY_NAME = "summary.json"


def alignment_path(out_dir: str | Path, utterance_id: str) -> Path:
    """``out_dir/<utterance_id>.TextGrid``; the id may hold ``/`` (sub-folders) but not ``..``."""
    rel = PurePosixPath(utterance_id)
    if not utterance_id or rel.is_absolute() or ".." in rel.parts:
        raise AlignmentError(f"utterance id {utterance_id!r} is not a safe relative path")
    return Path(out_dir).joinpath(*rel.parts[:-1], rel.name + ".TextGrid")


def sidecar_path(out_dir: str | Path, utterance_id: str) -> Path:
    tg = alignment_path(out_dir, utterance_id)
    return tg.with_name(tg.name[: -len(".TextGrid")] + SIDECAR_SUFFIX)


def _key(audio_digest: str, transcript: str, settings: dict[str, Any]) -> str:
    blob = json.dumps(
        {"audio_sha256": audio_digest, "transcript": transcript, "aligner": settings},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def alignment_key(out_dir: str | Path, utterance: Utterance) -> str | None:
    """The key of the current alignment of ``utterance`` in ``out_dir`` (None if none recorded)."""
    side = _read_sidecar(sidecar_path(out_dir, utterance.id))
    return None if side is None else side.get("key")


def load_alignment(out_dir: str | Path, utterance: Utterance) -> Alignment:
    """The alignment of ``utterance`` written by :func:`align_corpus` (or dropped in from MFA).

    Raises :class:`AlignmentError` naming the TextGrid when it is missing, unreadable, or was
    made for a different transcript.
    """
    path = alignment_path(out_dir, utterance.id)
    if not path.is_file():
        raise AlignmentError(f"no alignment for {utterance.id!r} (run `cmbert align` first)", path)
    alignment = read_textgrid(path, utterance.id)
    side = _read_sidecar(sidecar_path(out_dir, utterance.id))
    if side is not None:
        if side.get("transcript") != utterance.transcript:
            raise AlignmentError(
                "alignment is stale: it was made for another transcript (re-run `cmbert align`)",
                path,
            )
        alignment = Alignment(
            alignment.utterance_id,
            alignment.words,
            alignment.phones,
            alignment.duration_s,
            aligner=str(side.get("aligner_name", "")),
            method=str(side.get("method", "")),
            quality=None if side.get("quality") is None else float(side["quality"]),
        )
    if not alignment.words:
        raise AlignmentError("TextGrid has no words", path)
    return alignment


def method_counts(out_dir: str | Path, utterances: Sequence[Utterance]) -> dict[str, int]:
    """How many of ``utterances`` aligned in ``out_dir`` each method produced (from the
    sidecars; ``unknown`` for alignments that do not record one, e.g. dropped-in TextGrids)."""
    counts: dict[str, int] = {}
    for utt in utterances:
        side = _read_sidecar(sidecar_path(out_dir, utt.id))
        if side is None or not alignment_path(out_dir, utt.id).is_file():
            continue
        method = str(side.get("method") or "unknown")
        counts[method] = counts.get(method, 0) + 1
    return dict(sorted(counts.items()))


def _save(out_dir: Path, utterance: Utterance, key: str, settings: dict, ali: Alignment) -> None:
    write_textgrid(ali, alignment_path(out_dir, utterance.id))
    side = {
        "key": key,
        "utterance_id": utterance.id,
        "audio": str(utterance.audio),
        "transcript": utterance.transcript,
        "aligner_name": ali.aligner,
        "aligner": settings,
        "n_words": len(ali.words),
        "duration_s": ali.duration_s,
        "method": ali.method,
        "quality": ali.quality,
    }
    atomic_write_text(sidecar_path(out_dir, utterance.id), json.dumps(side, indent=1) + "\n")


def _align_one(aligner: Aligner, out_dir: Path, job: tuple[Utterance, str]) -> int:
    """Worker: align one utterance and persist it; returns its number of words."""
    utterance, key = job
    ali = aligner.align(utterance)  # the backend decodes the audio (after its own checks)
    _save(out_dir, utterance, key, aligner.settings(), ali)
    return len(ali.words)


def align_corpus(
    utterances: Sequence[Utterance],
    out_dir: str | Path,
    aligner: Aligner,
    jobs: int = 1,
    force: bool = False,
    on_progress: Callable[[int, int, int], None] | None = None,
    *,
    prior_failures: Sequence[ItemFailure] = (),
) -> BatchSummary:
    """Align every utterance into ``out_dir`` (see the module docstring); never raises per item.

    ``prior_failures`` (e.g. corpus items without a transcript) are counted and reported in
    the summary too. ``on_progress(done, failed, total)`` follows every item. The summary is
    also written to ``out_dir/summary.json``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = aligner.settings()
    failures: list[ItemFailure] = list(prior_failures)
    total = len(utterances) + len(failures)
    pending: list[tuple[Utterance, str]] = []
    skipped = 0
    for utt in utterances:
        try:
            if not Path(utt.audio).is_file():
                raise AudioError("audio file not found", utt.audio)
            key = _key(file_digest(utt.audio), utt.transcript, settings)
            side = _read_sidecar(sidecar_path(out_dir, utt.id))
            current = side is not None and side.get("key") == key
            if current and not force and alignment_path(out_dir, utt.id).is_file():
                skipped += 1
                continue
        except CmbertError as e:
            failures.append(ItemFailure(utt.id, e.path, "align", e.reason, type(e).__name__))
            continue
        except OSError as e:
            failures.append(ItemFailure(utt.id, str(utt.audio), "align",
                                        f"cannot read audio: {e.strerror or e}", "AudioError"))
            continue
        pending.append((utt, key))
    done_before = skipped + len(failures)
    if on_progress is not None:
        on_progress(done_before, len(failures), total)
    n_prior = len(failures)

    def progress(done: int, failed: int, _total: int) -> None:
        if on_progress is not None:
            on_progress(done_before + done, n_prior + failed, total)

    if aligner.corpus_level and pending:
        keys = {u.id: k for u, k in pending}
        state = {"done": 0, "failed": 0}
        run_failures: list[ItemFailure] = []

        def on_result(utt: Utterance, result: Alignment | CmbertError) -> None:
            if isinstance(result, CmbertError):
                run_failures.append(
                    ItemFailure(utt.id, result.path, "align", result.reason, type(result).__name__)
                )
                state["failed"] += 1
            else:
                try:
                    _save(out_dir, utt, keys[utt.id], settings, result)
                except CmbertError as e:
                    run_failures.append(ItemFailure(utt.id, e.path, "align", e.reason,
                                                    type(e).__name__))
                    state["failed"] += 1
            state["done"] += 1
            progress(state["done"], state["failed"], len(pending))

        try:
            aligner.align_corpus_level([u for u, _ in pending], out_dir / ".work", on_result)
        except CmbertError as e:  # the backend itself cannot run: every pending item fails
            seen = {f.item_id for f in run_failures}
            for utt, _ in pending:
                if utt.id not in seen and not alignment_path(out_dir, utt.id).is_file():
                    run_failures.append(
                        ItemFailure(utt.id, e.path, "align", e.reason, type(e).__name__)
                    )
        failures += run_failures
        n_done = len(pending) - len(run_failures)
    else:
        work = functools.partial(_align_one, aligner, out_dir)
        results, run_failures = run_batch(
            pending,
            work,
            stage="align",
            item_id=lambda job: job[0].id,
            jobs=jobs,
            on_progress=progress,
        )
        failures += run_failures
        n_done = len(results)
    summary = BatchSummary("align", total, n_done, skipped, tuple(failures))
    record = summary.to_dict()
    record["methods"] = method_counts(out_dir, utterances)
    atomic_write_text(out_dir / SUMMARY_NAME, json.dumps(record, indent=2) + "\n")
    for f in failures:
        log.info("align failed: %s (%s): %s", f.item_id, f.path, f.reason)
    return summary
