"""``cmbert train`` and ``cmbert evaluate``: fit CM-BERT / T-BERT on a feature cache (or text
TSVs) over several seeds, and re-score a saved bundle.

    cmbert train runs/ravdess-cache --out runs/ravdess-cmbert --model cmbert --seeds 5
    cmbert train --text-only ../shared/data/mosi-text --out runs/mosi-tbert --model tbert
    cmbert evaluate runs/ravdess-cmbert/seed-0 runs/ravdess-cache --split test
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cmbert_pipe.cli.app import app, console, out
from cmbert_pipe.cli.common import user_errors
from cmbert_pipe.errors import ConfigError
from cmbert_pipe.outputs import ensure_writable_dir

SHOWN = ("acc7", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "bacc2_non0", "acc2_paper",
         "mae", "corr")


def parse_opts(pairs: list[str]) -> dict:
    """``key=value`` strings → dict; values parsed as JSON where they are (numbers, booleans)."""
    extra = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--opt expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            extra[key.strip()] = json.loads(value)
        except ValueError:
            extra[key.strip()] = value
    return extra


def _model_options(pairs: list[str], **flags) -> dict:
    """``--opt`` pairs plus the dedicated fusion flags that were given (None = not given);
    the model named by ``--model`` rejects keys it does not know, naming them."""
    extra = parse_opts(pairs)
    extra.update({key: value for key, value in flags.items() if value is not None})
    return extra


def _fmt(name: str, v: float) -> str:
    if v != v:  # NaN
        return "nan"
    return f"{v:.3f}" if name in ("mae", "corr", "loss") else f"{100 * v:.1f}"


def metrics_table(title: str, rows: dict[str, dict[str, float]]) -> Table:
    """Metrics as rows, splits as columns (accuracies and F1 in %)."""
    table = Table(title=title)
    table.add_column("metric")
    for split in rows:
        table.add_column(split, justify="right")
    for name in SHOWN + ("loss",):
        table.add_row(name, *[_fmt(name, m.get(name, float("nan"))) for m in rows.values()])
    return table


def mean_std_table(title: str, ms: dict[str, dict[str, dict[str, float]]]) -> Table:
    """Mean ± std over seeds: metrics as rows, splits as columns."""
    table = Table(title=title)
    table.add_column("metric")
    for split in ms:
        table.add_column(split, justify="right")
    for name in SHOWN:
        cells = []
        for m in ms.values():
            s = m.get(name)
            cells.append("" if s is None else f"{_fmt(name, s['mean'])} ± {_fmt(name, s['std'])}")
        table.add_row(name, *cells)
    return table


@app.command("train", short_help="Train CM-BERT, T-BERT, MAG-BERT or CMSBERT-CLR over several seeds on a cache or text TSVs.")
def train_cmd(
    cache: Path | None = typer.Argument(None, help="Feature cache written by `cmbert extract-audio`."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Output folder: seed-N bundles + summary.json."),
    text_only: Path | None = typer.Option(None, "--text-only", help="Folder with train/dev/test.tsv (text<TAB>label); trains without audio."),
    model: str = typer.Option("cmbert", "--model", help="Registered model: tbert, cmbert, ..."),
    bert: str = typer.Option("", "--bert", help="Encoder checkpoint folder or name (default: embedded all-MiniLM-L6-v2)."),
    seeds: int = typer.Option(5, "--seeds", help="Number of seeds (0..N-1); mean ± std reported."),
    seed_start: int = typer.Option(0, "--seed-start", help="First seed."),
    epochs: int = typer.Option(3, "--epochs"),
    batch_size: int = typer.Option(24, "--batch-size"),
    max_len: int = typer.Option(50, "--max-len", help="Word-pieces incl. [CLS]/[SEP]."),
    scaling: str = typer.Option("paper", "--scaling", help="paper | reference (released code)."),
    cls_audio: str = typer.Option("mean", "--cls-audio", help="Audio at [CLS]: zero (paper) | mean."),
    lr_head: float = typer.Option(1e-2, "--lr-head", help="Learning rate outside the encoder."),
    lr_encoder: float = typer.Option(2e-5, "--lr-encoder"),
    ema: float = typer.Option(0.0, "--ema", help="EMA decay of the weights (0 = off); EMA weights evaluated and saved."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    amp: str = typer.Option("auto", "--amp", help="auto (bf16/fp16 on CUDA) | off | bf16 | fp16"),
    threads: int = typer.Option(0, "--threads", help="torch CPU threads (0 = default)."),
    max_train: int = typer.Option(0, "--max-train", help="Use only the first N training examples (0 = all)."),
    opt: list[str] = typer.Option([], "--opt", help="Model-specific option key=value (repeatable), stored in ModelConfig.extra."),
    cms: bool | None = typer.Option(None, "--cms/--no-cms", help="cmsbert-clr: context-driven modality shifting on/off."),
    contrastive: bool | None = typer.Option(None, "--contrastive/--no-contrastive", help="cmsbert-clr: InfoNCE text-audio loss on/off."),
    contrastive_weight: float | None = typer.Option(None, "--contrastive-weight", help="cmsbert-clr: weight of the contrastive loss."),
    temperature: float | None = typer.Option(None, "--temperature", help="cmsbert-clr: InfoNCE temperature."),
    label_smoothing: float | None = typer.Option(None, "--label-smoothing", help="cmsbert-clr: label smoothing of the 7-class auxiliary head."),
    mag_layer: int | None = typer.Option(None, "--mag-layer", help="magbert: encoder layer (1-based) the gate enters."),
    beta: float | None = typer.Option(None, "--beta", help="magbert / cmsbert-clr: the shift is at most beta times the state's norm."),
) -> None:
    """Train MODEL on a cache (labels and splits from its corpus) or on text TSVs; one bundle per
    seed in OUT/seed-N, metrics per split and seed plus mean ± std in OUT/summary.json. Seeds
    already finished in OUT are skipped (resume); Ctrl-C leaves the best checkpoint so far."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with user_errors():
        from cmbert_pipe.model import ModelConfig
        from cmbert_pipe.train import (
            TrainConfig,
            audio_dim_of,
            load_cache_examples,
            load_text_examples,
            train_seeds,
        )

        if (cache is None) == (text_only is None):
            raise ConfigError("give either a CACHE folder or --text-only TSV_DIR")
        ensure_writable_dir(out_dir)  # a read-only --out fails now, not after a whole seed
        if text_only is not None:
            examples, settings = load_text_examples(text_only)
        else:
            examples, settings = load_cache_examples(cache)
        mcfg = ModelConfig(model=model, bert=bert, max_len=max_len, scaling=scaling,
                           cls_audio=cls_audio, audio_dim=audio_dim_of(examples, 74),
                           extra=_model_options(opt, cms=cms, contrastive=contrastive,
                                                contrastive_weight=contrastive_weight,
                                                temperature=temperature,
                                                label_smoothing=label_smoothing,
                                                mag_layer=mag_layer, beta=beta))
        tcfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr_head=lr_head,
                           lr_encoder=lr_encoder, ema=ema, device=device, amp=amp,
                           threads=threads, max_train=max_train)
        seed_list = list(range(seed_start, seed_start + seeds))
        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                            MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                            TimeElapsedColumn(), console=console)
        state = {"task": None}

        def on_seed(seed: int) -> None:
            if state["task"] is not None:
                progress.remove_task(state["task"])
            state["task"] = progress.add_task(f"seed {seed} epoch 1/{epochs}", total=None, info="")
            state["seed"] = seed

        def on_step(done: int, total: int) -> None:
            progress.update(state["task"], completed=done, total=total)

        def on_epoch(seed: int, epoch: int, m: dict) -> None:
            progress.console.print(
                f"seed {seed} epoch {epoch + 1}/{epochs}: train loss {m['train_loss']:.4f}  "
                f"dev loss {m['dev_loss']:.4f}  dev acc2 {100 * m['dev_acc2_non0']:.1f}  "
                f"dev mae {m['dev_mae']:.3f}  {m['epoch_s']:.1f} s"
                + ("  [green]best[/]" if m["improved"] else ""))
            if epoch + 1 < epochs:
                progress.update(state["task"], description=f"seed {seed} epoch {epoch + 2}/{epochs}",
                                completed=0)

        try:
            with progress:
                summary = train_seeds(examples, mcfg, tcfg, seed_list, out_dir, settings,
                                      on_seed=on_seed, on_epoch=on_epoch, on_step=on_step)
        except KeyboardInterrupt:
            console.print(f"[yellow]interrupted[/]: best checkpoint so far kept in {out_dir}")
            raise typer.Exit(130) from None
        out.print(mean_std_table(f"{model} over {len(seed_list)} seed(s), mean ± std",
                                 summary["mean_std"]))
        console.print(f"summary: {out_dir / 'summary.json'}  wall {summary['wall_s']:.0f} s")


@app.command("evaluate", short_help="Re-score a saved model bundle on splits of a cache or TSV folder.")
def evaluate_cmd(
    model_dir: Path = typer.Argument(..., help="A bundle (OUT/seed-N) written by `cmbert train`."),
    cache: Path | None = typer.Argument(None, help="Feature cache to score."),
    text_only: Path | None = typer.Option(None, "--text-only", help="Folder with train/dev/test.tsv."),
    split: list[str] = typer.Option(["test"], "--split", help="Split(s) to score (repeatable)."),
    device: str = typer.Option("auto", "--device"),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Re-score a saved bundle on the named split(s) of a cache or TSV folder."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with user_errors():
        from cmbert_pipe.train import evaluate_bundle, load_cache_examples, load_text_examples

        if (cache is None) == (text_only is None):
            raise ConfigError("give either a CACHE folder or --text-only TSV_DIR")
        examples, _ = (load_text_examples(text_only) if text_only is not None
                       else load_cache_examples(cache))
        metrics = evaluate_bundle(model_dir, examples, split, device)
        if as_json:
            out.print_json(json.dumps(metrics))
        else:
            out.print(metrics_table(str(model_dir), metrics))
