"""The Typer application and the options every command shares.

Only the ``cli`` package touches argv and the terminal; library code logs and raises.
"""

from __future__ import annotations

import logging

import typer
from rich.console import Console
from rich.logging import RichHandler
from typer.core import TyperGroup

from cmbert_pipe import __version__


def _flags_as_flags(params: list) -> list:
    """An on/off option shows no value type in the help (Typer would print ``<bool>``)."""
    for p in params:
        if getattr(p, "is_flag", False) and p.metavar is None:
            p.metavar = ""
    return params


class Group(TyperGroup):
    """The ``cmbert`` group: every command's help shows flags as flags."""

    def get_params(self, ctx):
        return _flags_as_flags(super().get_params(ctx))

    def get_command(self, ctx, cmd_name: str):
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _flags_as_flags(command.get_params(ctx))
        return command


app = typer.Typer(
    cls=Group,
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
