"""``cmbert`` command line. Each stage's commands live in their own module of this package
and register themselves on :data:`app` when imported below."""

from __future__ import annotations

from cmbert_pipe.cli.app import app

# Stage command modules (import order = order in `cmbert --help`).
from cmbert_pipe.cli import align as _align  # noqa: F401,E402
from cmbert_pipe.cli import extract as _extract  # noqa: F401,E402
from cmbert_pipe.cli import train as _train  # noqa: F401,E402
from cmbert_pipe.cli import predict as _predict  # noqa: F401,E402
from cmbert_pipe.cli import run as _run  # noqa: F401,E402


def main() -> None:
    app()


__all__ = ["app", "main"]
