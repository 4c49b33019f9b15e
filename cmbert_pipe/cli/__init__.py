"""``cmbert`` command line. Each stage's commands live in their own module of this package
and register themselves on :data:`app` when imported below.

Start-up cost: the command modules import the stage modules that need torch, transformers,
librosa or matplotlib (``cmbert_pipe.train``, ``.predict``, ``.plots``) inside the command
function, not at the top, so that ``cmbert --help``, argument errors and configuration errors
answer without loading them. Measured in one process on the 2-core dev machine under load:
importing ``cmbert_pipe.cli`` took 1.3-1.6 s, those stage modules 6-7 times as long again
(``tests/test_config.py`` checks that the CLI imports no torch). Everything else is imported at
the top of its module.
"""

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
