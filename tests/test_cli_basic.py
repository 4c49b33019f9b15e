"""The CLI's entry points: version, the command list with one-line help, no traceback."""

from typer.testing import CliRunner

from cmbert_pipe import __version__
from cmbert_pipe.cli import app

COMMANDS = ("align", "extract-audio", "export-frames", "train", "evaluate", "predict", "run",
            "demo")


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_every_command_is_listed_with_one_sentence_of_help():
    for name in COMMANDS:
        cmd = next(c for c in app.registered_commands if c.name == name)
        short = cmd.short_help or (cmd.callback.__doc__ or "").strip().split("\n\n")[0]
        assert short and short.count(". ") == 0, (name, short)
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


def test_docs_cli_reference_is_current():
    """docs/cli.md is generated from the commands; an option added without regenerating it
    (python -m cmbert_pipe.cli.reference > docs/cli.md) fails here."""
    from pathlib import Path

    from cmbert_pipe.cli.reference import reference

    doc = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
    assert doc.read_text(encoding="utf-8") == reference(), \
        "docs/cli.md is stale: python -m cmbert_pipe.cli.reference > docs/cli.md"
