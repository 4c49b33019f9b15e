"""The command-line reference (docs/cli.md), written from the commands themselves.

    python -m cmbert_pipe.cli.reference > docs/cli.md
"""

from __future__ import annotations

import inspect
from enum import Enum

import typer

from cmbert_pipe.cli import app

HEADER = """# Command-line reference

Generated from the commands by `python -m cmbert_pipe.cli.reference > docs/cli.md`; `cmbert
COMMAND --help` shows the same. Every command exits 0 on success, 1 when some items of a batch
failed (each is listed with its file and reason; the rest are done), 2 on a usage or
configuration error (before any work). Defaults come from the configuration dataclasses
([configuration.md](configuration.md)).

Global options (before the command): `--debug` (tracebacks and debug logs), `--verbose` / `-v`
(info logs), `--version`.
"""


def _kind(param, ctx) -> str:
    if getattr(param, "is_flag", False):
        return "flag"
    return param.display_type(ctx).strip("<>").replace("|", " \\| ")


def _default(param) -> str:
    value = param.default
    if getattr(param, "required", False) or value is None or callable(value):
        return ""
    if isinstance(value, Enum):
        value = value.value
    if getattr(param, "is_flag", False) and value is False:
        return ""
    if isinstance(value, (list, tuple, str)) and not value:
        return ""
    return f"`{value}`"


def _cell(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def reference() -> str:
    group = typer.main.get_command(app)
    out = [HEADER]
    ctx = typer.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        doc = inspect.cleandoc(cmd.help or "").replace("\b\n", "")
        args = [p for p in cmd.params if p.param_type_name == "argument"]
        usage = " ".join(f"[{p.name.upper()}]" if not p.required else p.name.upper() for p in args)
        out += [f"## `cmbert {name}`", "", f"`cmbert {name} [OPTIONS] {usage}`".rstrip(), ""]
        paragraphs = doc.split("\n\n")
        out += [" ".join(paragraphs[0].split()), ""]
        examples = [p for p in paragraphs[1:] if p.strip()]
        if examples:
            out += ["```bash", *(line.strip() for p in examples for line in p.splitlines()
                                 if line.strip()), "```", ""]
        out += ["| argument / option | value | default | meaning |", "|---|---|---|---|"]
        for p in cmd.params:
            if p.param_type_name == "argument":
                label = p.name.upper()
            else:
                label = " / ".join(f"`{o}`" for o in (*p.opts, *p.secondary_opts))
                label += " (required)" if p.required else ""
            out.append(f"| {label} | {_kind(p, ctx)} | {_default(p)} | {_cell(p.help)} |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    print(reference(), end="")


if __name__ == "__main__":
    main()
