"""The Typer application and the options every command shares.

Only the ``cli`` package touches argv and the terminal; library code logs and raises.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import Iterator

import click
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from typer.core import TyperGroup

from cmbert_pipe import __version__
from cmbert_pipe.errors import CmbertError, ConfigError


def _refuse_non_finite(values: dict) -> None:
    """NaN or infinity in a numeric option is refused before any work (click's ranges let NaN
    through: every comparison with it is false)."""
    ctx = click.get_current_context(silent=True)
    flags = {p.name: (p.opts[0] if p.opts else p.name) for p in ctx.command.params} if ctx else {}
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"option {flags.get(name, name)} must be a finite number, "
                              f"got {value}")


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


class GuardedTyper(typer.Typer):
    """A Typer whose every command runs under :func:`user_errors`: no
    exception leaves a command as a traceback (unless ``--debug``), whatever it is."""

    def command(self, name: str | None = None, **kwargs):
        register = super().command(name, **kwargs)

        def decorator(func):
            label = name or func.__name__.replace("_", "-")

            @functools.wraps(func)
            def guarded(*args, **kw):
                STATE["command"] = f"running `cmbert {label}`"
                with user_errors():
                    _refuse_non_finite(kw)
                    return func(*args, **kw)

            register(guarded)
            return func

        return decorator


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


app = GuardedTyper(
    cls=Group,
    name="cmbert",
    help="Audio + transcript -> sentiment: align, extract acoustic features, train and run CM-BERT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)  # progress and messages; stdout is kept for results (--json)
out = Console()  # results

STATE: dict = {"debug": False, "command": None}


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
