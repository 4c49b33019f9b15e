"""Helpers shared by the CLI commands: error display, failure reports, progress bars."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import click
import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from cmbert_pipe.cli.app import STATE, console
from cmbert_pipe.errors import CmbertError
from cmbert_pipe.outputs import atomic_write_text
from cmbert_pipe.schema import BatchSummary


def _printable_char(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte of an undecodable file name (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 32 or code == 127:
        return f"\\x{code:02x}"
    if 0xD800 <= code <= 0xDFFF:
        return f"\\u{code:04x}"
    return ch


def shown(value: object) -> str:
    """``value`` as text safe to print: rich markup escaped, control characters and bytes that
    are not text (undecodable file names) written as escapes."""
    return escape("".join(_printable_char(ch) for ch in str(value)))


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
def user_errors(what: str | None = None) -> Iterator[None]:
    """A domain error becomes one red line and exit code 2; any other exception one line naming
    what was being done and its type, exit code 1. The traceback only with ``--debug``."""
    try:
        yield
    except (typer.Exit, typer.Abort, click.exceptions.Exit, click.exceptions.ClickException,
            click.exceptions.Abort):
        raise
    except CmbertError as e:
        if STATE["debug"]:
            console.print_exception()
        console.print(f"[bold red]error:[/] {shown(e)}", soft_wrap=True)
        raise typer.Exit(2) from None
    except Exception as e:
        if STATE["debug"]:
            console.print_exception()
        step = getattr(e, "_cmbert_doing", None) or what or STATE.get("command") or "working"
        hint = "" if STATE["debug"] else "  (--debug shows the traceback)"
        console.print(f"[bold red]error[/] while {shown(step)}: {type(e).__name__}: "
                      f"{shown(e)}{hint}", soft_wrap=True)
        raise typer.Exit(1) from None


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
