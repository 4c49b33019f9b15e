"""Helpers shared by the CLI commands: error display, failure reports, progress bars."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from cmbert_pipe.audio import AUDIO_EXTENSIONS
from cmbert_pipe.cli.app import STATE, console, shown, user_errors  # noqa: F401 (re-exported)
from cmbert_pipe.config import build_sections
from cmbert_pipe.corpus import TRANSCRIPT_EXTENSIONS, CorpusScan, single_clip
from cmbert_pipe.datasets import discover_corpus
from cmbert_pipe.errors import ConfigError, TranscriptError
from cmbert_pipe.io import atomic_write_text
from cmbert_pipe.schema import BatchSummary, ItemFailure

# The CORPUS [TRANSCRIPT] --transcripts declarations shared by align and extract-audio.
CORPUS_ARG = typer.Argument(..., help="Folder of audio + same-stem .txt/.lab transcripts (or "
                            "of RAVDESS clips, whose names give the transcript), a manifest CSV, "
                            "or one audio clip.")
TRANSCRIPT_ARG = typer.Argument(None, help="With a single clip as CORPUS: its transcript file.")
TRANSCRIPTS_OPT = typer.Option(None, "--transcripts", help="Folder holding the same-stem "
                               "transcripts, if not beside the audio (sub-folders mirrored).")


def is_corpus(path: Path) -> bool:
    """A corpus argument is a folder or a manifest CSV; anything else is one clip."""
    return path.is_dir() or path.suffix.lower() == ".csv"


def corpus_or_clip(corpus: Path, transcript: Path | None, transcripts: Path | None,
                   command: str) -> CorpusScan:
    """The ``CORPUS [TRANSCRIPT]`` arguments of ``align`` and ``extract-audio``: a folder of
    audio with same-stem transcripts (in ``transcripts`` if given), a RAVDESS folder, or a
    manifest CSV, or one clip and its transcript file. A transcript that cannot be read is the clip's failure."""
    if transcript is not None:
        if is_corpus(corpus) or corpus.suffix.lower() not in AUDIO_EXTENSIONS:
            raise ConfigError("a transcript argument goes with a single audio clip "
                              f"({'/'.join(sorted(AUDIO_EXTENSIONS))})", corpus)
        if transcripts is not None:
            raise ConfigError("--transcripts applies to a corpus folder, not to one clip")
        try:
            return CorpusScan((single_clip(corpus, transcript),), ())
        except TranscriptError as e:
            return CorpusScan((), (ItemFailure(corpus.stem, e.path, "load", e.reason,
                                               type(e).__name__),))
    if corpus.is_file() and not is_corpus(corpus):
        raise ConfigError(f"a single clip needs its transcript: cmbert {command} CLIP "
                          f"TRANSCRIPT ... (a {'/'.join(TRANSCRIPT_EXTENSIONS)} file)", corpus)
    if not corpus.exists():
        raise ConfigError("corpus not found", corpus)
    return discover_corpus(corpus, transcripts)


def with_load_failures(summary: BatchSummary, failures: Sequence[ItemFailure]) -> BatchSummary:
    """``summary`` of a batch stage with the items that could not even be loaded added."""
    if not failures:
        return summary
    return BatchSummary(summary.stage, summary.total + len(failures), summary.done,
                        summary.skipped, tuple(failures) + tuple(summary.failures))


def choices(name: str, names: Sequence[str]) -> type[Enum]:
    """An Enum of ``names`` for a Typer option: the help lists them as ``<a|b|c>``."""
    return Enum(name, {n: n for n in names}, type=str)


def typed_here(ctx: typer.Context, name: str) -> bool:
    """Whether the option ``name`` was typed on the command line (not left at its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def typed_options(ctx: typer.Context, keys: dict[str, str], overrides: Sequence[str] = (),
                  computed: dict[str, tuple[str, Any]] | None = None,
                  **sections: type) -> dict[str, Any]:
    """The stage configs ``sections`` (name -> dataclass) built by the one loader of
    :mod:`cmbert_pipe.config` from the options typed on the command line (``keys`` maps a
    parameter name to its dotted config key), values the command ``computed`` from its options
    (dotted key -> (option, value)) and then ``--set`` overrides. Options left at their
    default are not passed on: the dataclass holds the defaults (the help shows them). An
    invalid value is a ConfigError that names the option as typed."""
    given = {key: value for key, (_flag, value) in (computed or {}).items()}
    flag_of = {key: flag for key, (flag, _value) in (computed or {}).items()}
    for param in ctx.command.params:
        if param.name not in keys or not typed_here(ctx, param.name):
            continue
        value = ctx.params[param.name]
        given[keys[param.name]] = value.value if isinstance(value, Enum) else value
        flag_of[keys[param.name]] = next((o for o in param.opts if o.startswith("--")),
                                         param.opts[0])
    try:
        return build_sections(sections, given, overrides)
    except ConfigError as e:
        key = e.reason.split(" ", 1)[0]
        for dotted, flag in flag_of.items():
            if key == dotted or key.startswith(dotted + "."):
                raise ConfigError(f"{flag}: {e.reason}", e.path) from None
        raise


@contextlib.contextmanager
def doing(what: str) -> Iterator[None]:
    """Name the step in progress: an unexpected error inside it is reported as happening
    "while <what>" (see :func:`user_errors`)."""
    try:
        yield
    except Exception as e:
        if not hasattr(e, "_cmbert_doing"):
            try:
                e._cmbert_doing = what  # type: ignore[attr-defined]
            except AttributeError:  # pragma: no cover - exceptions with __slots__
                pass
        raise


@contextlib.contextmanager
def progress_bar(description: str, total: int) -> Iterator[BatchProgress]:
    """A rich progress bar showing done/total and the number of failures so far."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[red]{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    with progress:
        task = progress.add_task(description, total=total, failed=0)
        yield BatchProgress(progress, task)


class BatchProgress:
    def __init__(self, progress: Progress, task: int):
        self._progress, self._task = progress, task

    def __call__(self, done: int, failed: int, total: int) -> None:
        self._progress.update(self._task, completed=done, total=total, failed=failed)


CLUSTER_HELP = ("Run the items on Dask: local:N (a local cluster of N worker processes) or a "
                "scheduler address such as tcp://host:8786. Default: --jobs local processes.")


def report_summary(summary: BatchSummary, summary_path: Path | None = None) -> None:
    """Print what a batch run did, list every failure with its reason, and exit non-zero
    when anything failed. Writes the machine-readable summary to ``summary_path``."""
    if summary_path is not None:
        with doing(f"writing the summary {summary_path}"):
            atomic_write_text(summary_path, json.dumps(summary.to_dict(), indent=2))
    console.print(
        f"[bold]{summary.stage}[/]: {summary.total} item(s), {summary.done} done, "
        f"{summary.skipped} already current, [red]{len(summary.failures)} failed[/]"
    )
    if summary.changed:
        console.print("[yellow]recomputed because their key changed:[/] " + ", ".join(
            f"{name} ({n})" for name, n in summary.changed))
    if summary.failures:
        table = Table(title="failures", show_lines=False)
        table.add_column("item")
        table.add_column("file")
        table.add_column("reason", overflow="fold")
        for f in summary.failures:
            table.add_row(shown(f.item_id), shown(f.path or ""), shown(f.reason))
        console.print(table)
    if summary_path is not None:
        console.print(f"summary: {shown(summary_path)}")
    if summary.failures:
        raise typer.Exit(1)
