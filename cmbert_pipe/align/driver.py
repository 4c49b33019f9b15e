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
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cmbert_pipe.align.base import Aligner
from cmbert_pipe.align.textgrid import read_textgrid, write_textgrid
from cmbert_pipe.batch import (
    Check,
    Executor,
    ItemKey,
    ProgressCallback,
    part_digests,
    plan_stage,
    run_stage,
)
from cmbert_pipe.errors import AlignmentError, AudioError, CmbertError
from cmbert_pipe.io import atomic_write_text, file_digest, read_json
from cmbert_pipe.outputs import PathClaims, ensure_writable_dir, id_path, unsafe_id_reason
from cmbert_pipe.schema import Alignment, BatchSummary, ItemFailure, Utterance

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".align.json"
SUMMARY_NAME = "summary.json"


def alignment_path(out_dir: str | Path, utterance_id: str) -> Path:
    """``out_dir/<utterance_id>.TextGrid``; the id may hold ``/`` (sub-folders) but not ``..``."""
    reason = unsafe_id_reason(utterance_id)
    if reason is not None:
        raise AlignmentError(f"utterance id {utterance_id!r} is not a safe relative path: "
                             f"{reason}")
    return id_path(out_dir, utterance_id, ".TextGrid")


def sidecar_path(out_dir: str | Path, utterance_id: str) -> Path:
    tg = alignment_path(out_dir, utterance_id)
    return tg.with_name(tg.name[: -len(".TextGrid")] + SIDECAR_SUFFIX)


def item_key(audio_digest: str, transcript: str, settings: dict[str, Any]) -> ItemKey:
    """SHA-256 over the audio bytes' digest, the transcript and the aligner's settings."""
    return ItemKey.of(audio_sha256=audio_digest, transcript=transcript, aligner=settings)


def alignment_key(out_dir: str | Path, utterance: Utterance) -> str | None:
    """The key of the current alignment of ``utterance`` in ``out_dir`` (None if none recorded)."""
    side = read_json(sidecar_path(out_dir, utterance.id))
    return None if side is None else side.get("key")


def stale_reason(side: dict[str, Any], utterance: Utterance,
                 audio_sha256: str | None) -> str | None:
    """Why the alignment a sidecar describes no longer fits ``utterance`` (None if it does):
    another transcript, or audio whose bytes changed since it was aligned."""
    if side.get("transcript") != utterance.transcript:
        return "alignment is stale: it was made for another transcript (re-run `cmbert align`)"
    if audio_sha256 is None:
        return None
    parts = side.get("key_parts") if isinstance(side.get("key_parts"), dict) else {}
    if side.get("audio_sha256") is not None:
        same = side["audio_sha256"] == audio_sha256
    elif parts.get("audio_sha256") is not None:
        same = parts["audio_sha256"] == part_digests({"audio_sha256": audio_sha256})[
            "audio_sha256"]
    elif side.get("key") and isinstance(side.get("aligner"), dict):  # the oldest sidecars
        same = item_key(audio_sha256, utterance.transcript, side["aligner"]).digest == side["key"]
    else:
        return None  # nothing recorded about the audio (a TextGrid dropped in by hand)
    if not same:
        return (f"alignment is stale: the audio {utterance.audio} changed since it was aligned "
                "(its SHA-256 differs); re-run `cmbert align`")
    return None


def load_alignment(out_dir: str | Path, utterance: Utterance,
                   audio_sha256: str | None = None) -> Alignment:
    """The alignment of ``utterance`` written by :func:`align_corpus` (or dropped in from MFA).

    Raises :class:`AlignmentError` naming the TextGrid when it is missing, unreadable, or was
    made for a different transcript or (given ``audio_sha256``) for other audio bytes.
    """
    path = alignment_path(out_dir, utterance.id)
    if not path.is_file():
        raise AlignmentError(f"no alignment for {utterance.id!r} (run `cmbert align` first)", path)
    alignment = read_textgrid(path, utterance.id)
    side = read_json(sidecar_path(out_dir, utterance.id))
    if side is not None:
        stale = stale_reason(side, utterance, audio_sha256)
        if stale is not None:
            raise AlignmentError(stale, path)
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


def alignment_quality(out_dir: str | Path, utterance: Utterance) -> tuple[str, float | None]:
    """(method, quality) recorded in the sidecar of ``utterance``'s alignment; ``("", None)``
    when none is recorded (no sidecar, or an aligner that gives none)."""
    side = read_json(sidecar_path(out_dir, utterance.id)) or {}
    quality = side.get("quality")
    return str(side.get("method") or ""), None if quality is None else float(quality)


def method_counts(out_dir: str | Path, utterances: Sequence[Utterance]) -> dict[str, int]:
    """How many of ``utterances`` aligned in ``out_dir`` each method produced (from the
    sidecars; ``unknown`` for alignments that do not record one, e.g. dropped-in TextGrids)."""
    counts: dict[str, int] = {}
    for utt in utterances:
        if unsafe_id_reason(utt.id) is not None:  # refused: it has no alignment to count
            continue
        side = read_json(sidecar_path(out_dir, utt.id))
        if side is None or not alignment_path(out_dir, utt.id).is_file():
            continue
        method = str(side.get("method") or "unknown")
        counts[method] = counts.get(method, 0) + 1
    return dict(sorted(counts.items()))


def _save(out_dir: Path, utterance: Utterance, key: ItemKey, settings: dict,
          ali: Alignment) -> None:
    write_textgrid(ali, alignment_path(out_dir, utterance.id))
    side = {
        "key": key.digest,
        "key_parts": dict(key.parts),
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


def _align_one(aligner: Aligner, out_dir: Path, utterance: Utterance, key: ItemKey) -> int:
    """Worker: align one utterance and persist it; returns its number of words."""
    ali = aligner.align(utterance)  # the backend decodes the audio (after its own checks)
    _save(out_dir, utterance, key, aligner.settings(), ali)
    return len(ali.words)


def _key_of(settings: dict[str, Any], claims: PathClaims, utt: Utterance) -> ItemKey:
    claims.claim(utt.id)  # two ids for one TextGrid (names differing in case): the second fails
    if not Path(utt.audio).is_file():
        raise AudioError("audio file not found", utt.audio)
    try:
        digest = file_digest(utt.audio)
    except OSError as e:
        raise AudioError(f"cannot read audio: {e.strerror or e}", utt.audio) from None
    return item_key(digest, utt.transcript, settings)


def _check(out_dir: Path, utt: Utterance, key: ItemKey) -> Check:
    side = read_json(sidecar_path(out_dir, utt.id))
    if side is None:
        return Check.missing()
    check = Check.against(key, side.get("key"), side.get("key_parts"))
    if check.current and not alignment_path(out_dir, utt.id).is_file():
        return Check.missing()
    return check


def align_corpus(
    utterances: Sequence[Utterance],
    out_dir: str | Path,
    aligner: Aligner,
    jobs: int = 1,
    force: bool = False,
    on_progress: ProgressCallback | None = None,
    *,
    prior_failures: Sequence[ItemFailure] = (),
    executor: Executor | None = None,
) -> BatchSummary:
    """Align every utterance into ``out_dir`` (see the module docstring); never raises per item.

    ``prior_failures`` (e.g. corpus items without a transcript) are counted and reported in
    the summary too. ``on_progress(done, failed, total)`` follows every item. Work runs on
    ``executor`` (see :func:`cmbert_pipe.batch.open_executor`), else on ``jobs`` local
    processes. The summary is also written to ``out_dir/summary.json``.
    """
    out_dir = ensure_writable_dir(out_dir)  # a read-only --out fails now, not after the work
    settings = aligner.settings()
    key = functools.partial(_key_of, settings, PathClaims())
    is_current = functools.partial(_check, out_dir)
    if aligner.corpus_level:
        summary = _align_corpus_level(utterances, out_dir, aligner, key, is_current, force,
                                      on_progress, prior_failures)
    else:
        summary = run_stage(
            utterances, key, is_current, functools.partial(_align_one, aligner, out_dir),
            on_progress=on_progress, stage="align", item_id=lambda u: u.id,
            executor=executor, jobs=jobs, force=force, prior_failures=prior_failures)
    record = summary.to_dict()
    record["methods"] = method_counts(out_dir, utterances)
    atomic_write_text(out_dir / SUMMARY_NAME, json.dumps(record, indent=2) + "\n")
    return summary


def _align_corpus_level(utterances, out_dir: Path, aligner: Aligner, key, is_current,
                        force: bool, on_progress: ProgressCallback | None,
                        prior_failures: Sequence[ItemFailure]) -> BatchSummary:
    """A backend that aligns the whole corpus in one call (MFA): the same plan, one call."""
    plan = plan_stage(utterances, key, is_current, stage="align", item_id=lambda u: u.id,
                      force=force, prior_failures=prior_failures)
    settings = aligner.settings()
    n_before = plan.skipped + len(plan.failures)
    state = {"done": 0, "failed": len(plan.failures)}
    if on_progress is not None:
        on_progress(n_before, state["failed"], plan.total)
    pending = plan.pending
    if not pending:
        return plan.summary(0)
    keys = {u.id: k for u, k in pending}
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
        if on_progress is not None:
            on_progress(n_before + state["done"], state["failed"], plan.total)

    try:
        aligner.align_corpus_level([u for u, _ in pending], out_dir / ".work", on_result)
    except CmbertError as e:  # the backend itself cannot run: every pending item fails
        seen = {f.item_id for f in run_failures}
        for utt, _ in pending:
            if utt.id not in seen and not alignment_path(out_dir, utt.id).is_file():
                run_failures.append(
                    ItemFailure(utt.id, e.path, "align", e.reason, type(e).__name__)
                )
    plan.failures += run_failures
    for f in run_failures:
        log.info("align failed: %s (%s): %s", f.item_id, f.path, f.reason)
    return plan.summary(len(pending) - len(run_failures))
