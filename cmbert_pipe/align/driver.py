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
from pathlib import Path
from typing import Any

from cmbert_pipe.align.base import Aligner
from cmbert_pipe.align.textgrid import atomic_write_text, read_textgrid, write_textgrid
from cmbert_pipe.audio import file_digest
from cmbert_pipe.batch import run_batch
from cmbert_pipe.errors import AlignmentError, AudioError, CmbertError
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


def stale_reason(side: dict[str, Any], utterance: Utterance,
                 audio_sha256: str | None) -> str | None:
    """Why the alignment a sidecar describes no longer fits ``utterance`` (None if it does):
    another transcript, or audio whose bytes changed since it was aligned."""
    if side.get("transcript") != utterance.transcript:
        return "alignment is stale: it was made for another transcript (re-run `cmbert align`)"
    if audio_sha256 is None:
        return None
    recorded = side.get("audio_sha256")
    if recorded is not None:
        same = recorded == audio_sha256
    elif side.get("key") and isinstance(side.get("aligner"), dict):  # sidecars before the field
        same = _key(audio_sha256, utterance.transcript, side["aligner"]) == side["key"]
    else:
        return None  # nothing recorded about the audio
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
    side = _read_sidecar(sidecar_path(out_dir, utterance.id))
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
        )
    if not alignment.words:
        raise AlignmentError("TextGrid has no words", path)
    return alignment


def _save(out_dir: Path, utterance: Utterance, key: str, settings: dict, ali: Alignment,
          audio_sha256: str | None = None) -> None:
    write_textgrid(ali, alignment_path(out_dir, utterance.id))
    side = {
        "key": key,
        "utterance_id": utterance.id,
        "audio": str(utterance.audio),
        "audio_sha256": audio_sha256,
        "transcript": utterance.transcript,
        "aligner_name": ali.aligner,
        "aligner": settings,
        "n_words": len(ali.words),
        "duration_s": ali.duration_s,
    }
    atomic_write_text(sidecar_path(out_dir, utterance.id), json.dumps(side, indent=1) + "\n")


def _align_one(aligner: Aligner, out_dir: Path, job: tuple[Utterance, str, str]) -> int:
    """Worker: align one utterance and persist it; returns its number of words."""
    utterance, key, audio_sha256 = job
    ali = aligner.align(utterance)  # the backend decodes the audio (after its own checks)
    _save(out_dir, utterance, key, aligner.settings(), ali, audio_sha256)
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
    out_dir = ensure_writable_dir(out_dir)  # a read-only --out fails now, not after the work
    settings = aligner.settings()
    claims = PathClaims()
    failures: list[ItemFailure] = list(prior_failures)
    total = len(utterances) + len(failures)
    pending: list[tuple[Utterance, str, str]] = []
    skipped = 0
    for utt in utterances:
        try:
            if not Path(utt.audio).is_file():
                raise AudioError("audio file not found", utt.audio)
            claims.claim(utt.id)  # two ids for one TextGrid: the second one fails
            digest = file_digest(utt.audio)
            key = _key(digest, utt.transcript, settings)
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
        pending.append((utt, key, digest))
    done_before = skipped + len(failures)
    if on_progress is not None:
        on_progress(done_before, len(failures), total)
    n_prior = len(failures)

    def progress(done: int, failed: int, _total: int) -> None:
        if on_progress is not None:
            on_progress(done_before + done, n_prior + failed, total)

    if aligner.corpus_level and pending:
        keys = {u.id: (k, d) for u, k, d in pending}
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
                    _save(out_dir, utt, keys[utt.id][0], settings, result, keys[utt.id][1])
                except CmbertError as e:
                    run_failures.append(ItemFailure(utt.id, e.path, "align", e.reason,
                                                    type(e).__name__))
                    state["failed"] += 1
            state["done"] += 1
            progress(state["done"], state["failed"], len(pending))

        try:
            aligner.align_corpus_level([u for u, _, _ in pending], out_dir / ".work", on_result)
        except CmbertError as e:  # the backend itself cannot run: every pending item fails
            seen = {f.item_id for f in run_failures}
            for utt, _, _ in pending:
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
    atomic_write_text(out_dir / SUMMARY_NAME, json.dumps(summary.to_dict(), indent=2) + "\n")
    for f in failures:
        log.info("align failed: %s (%s): %s", f.item_id, f.path, f.reason)
    return summary
