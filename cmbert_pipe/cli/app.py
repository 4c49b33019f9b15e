"""The Typer application and the options every command shares.

Only the ``cli`` package touches argv and the terminal; library code logs and raises.
"""

from __future__ import annotations

import logging

import typer
from rich.console import Console
from rich.logging import RichHandler

from cmbert_pipe import __version__

app = typer.Typer(
    name="cmbert",
    help="Audio + transcript -> sentiment: align, extract acoustic features, train and run CM-BERT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)  # progress and messages; stdout is kept for results (--json)
out = Console()  # results

STATE = {"debug": False}


def _version(value: bool) -> None:
    if value:
        out.print(f"cmbert-pipe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show info logs."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    STATE["debug"] = debug
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=debug, rich_tracebacks=debug)],
        force=True,
    )
