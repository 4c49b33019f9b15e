"""``cmbert run RECIPE.toml`` (every stage of a pipeline) and ``cmbert demo`` (the embedded one)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import typer

from cmbert_pipe.batch import parse_cluster
from cmbert_pipe.cli.app import app, console, out
from cmbert_pipe.cli.common import progress_bar, shown, user_errors
from cmbert_pipe.cli.predict import print_prediction
from cmbert_pipe.config import load_recipe
from cmbert_pipe.outputs import ensure_writable_dir
from cmbert_pipe.pipeline import PipelineResult, Reporter, demo_recipe, run_pipeline


class ConsoleReporter(Reporter):
    """Every stage as a line on stderr, batch stages with a progress bar."""

    def stage(self, name: str, message: str) -> None:
        console.print(f"[bold cyan]{name:>8}[/] {shown(message)}")

    def progress(self, name: str, total: int):
        @contextlib.contextmanager
        def bar() -> Iterator[Callable[[int, int, int], None]]:
            with progress_bar(name, total) as update:
                yield update

        return bar()


def _finish(result: PipelineResult) -> None:
    out.print(result.report_md.read_text(encoding="utf-8"), markup=False, highlight=False,
              soft_wrap=True)
    if result.prediction is not None:
        print_prediction(result.prediction)
    if result.attention_png is not None:
        console.print(f"[bold]attention picture:[/] {shown(result.attention_png)}")
    console.print(f"[bold]report:[/] {shown(result.report_md)}  ({shown(result.report_json)})")
    console.print(f"[bold]model:[/] {shown(result.model_dir)}   try: cmbert predict CLIP.wav "
                  f"TRANSCRIPT.txt --model {result.model_dir}")
    if result.failures:
        console.print(f"[red]{len(result.failures)} item(s) failed[/] (listed in the report)")
        raise typer.Exit(1)


def _run(recipe: Path | None, overrides: list[str], out_dir: Path | None, force: bool,
         cluster: str | None = None) -> None:
    if cluster:
        parse_cluster(cluster)  # a malformed address: refused before any work
    config = load_recipe(recipe, overrides)
    out_dir = ensure_writable_dir(out_dir or Path("runs") / config.name)  # before any stage
    console.print(f"[bold]cmbert run[/] {shown(recipe)} -> {shown(out_dir)}"
                  + (f" (items on Dask: {cluster})" if cluster else ""))
    result = run_pipeline(config, out_dir, reporter=ConsoleReporter(), force=force,
                          cluster=cluster)
    _finish(result)


@app.command("run", short_help="Run a TOML pipeline: align, extract-audio, train, evaluate, skipping what is current.")
def run_cmd(
    recipe: Path = typer.Argument(..., help="A pipeline recipe, e.g. pipelines/ravdess.toml."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe key: --set "
                                   "train.epochs=1 --set data=/path (repeatable)."),
    out_dir: Path | None = typer.Option(None, "--out", "-o", help="Output folder "
                                           "(default runs/<name>)."),
    force: bool = typer.Option(False, "--force", help="Recompute every stage."),
    cluster: str | None = typer.Option(None, "--cluster", help="Align and extract on Dask: "
                                       "local:N worker processes or a scheduler address "
                                       "(tcp://host:8786). Default: the recipe's jobs."),
) -> None:
    """Run a pipeline: align -> extract-audio -> train -> evaluate, skipping current stages,
    resuming after a kill; writes report.md and report.json.

    \b
      cmbert run pipelines/ravdess.toml --out runs/ravdess
      cmbert run pipelines/mosi.toml --set data=/path/CMU_MOSI_Raw
    """
    with user_errors():
        _run(recipe, list(set_), out_dir, force, cluster)


@app.command("demo", short_help="Run the embedded demo end to end: align, extract, train, predict with an attention picture.")
def demo_cmd(
    out_dir: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Output folder."),
    set_: list[str] = typer.Option([], "--set", help="Override a key of pipelines/demo.toml, "
                                   "e.g. --set features.feature_set=egemaps."),
    force: bool = typer.Option(False, "--force", help="Recompute every stage."),
) -> None:
    """The embedded demo: the project's own synthesised clips (assets/demo) aligned, extracted,
    trained for a short run, and one clip scored with its attention picture.

    \b
      cmbert demo --out runs/demo
    """
    with user_errors():
        _run(demo_recipe(), list(set_), out_dir, force)
