"""``cmbert train`` and ``cmbert evaluate``: fit CM-BERT / T-BERT on a feature cache (or text
TSVs) over several seeds, and re-score a saved bundle.

    cmbert train runs/ravdess-cache --out runs/ravdess-cmbert --model cmbert --seeds 5
    cmbert train runs/ravdess-cache --out runs/ravdess-mag-enc --model magbert \
        --audio-head encoder --objective binary --audio-norm speaker --patience 3 --epochs 20
    cmbert train runs/ravdess-cache --out runs/ravdess-audio --model audio --audio-head encoder
    cmbert train --text-only ../shared/data/mosi-text --out runs/mosi-tbert --model tbert
    cmbert evaluate runs/ravdess-cmbert/seed-0 runs/ravdess-cache --split test
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cmbert_pipe.cli.app import app, console, out
from cmbert_pipe.cli.common import choices, shown, typed_here, typed_options, user_errors
from cmbert_pipe.config import (
    AMP_MODES,
    AUDIO_HEADS,
    AUDIO_NORMS,
    CLS_AUDIO,
    MODEL_NAMES,
    OBJECTIVES,
    SCALINGS,
    SELECT_METRICS,
    ModelConfig,
    TrainConfig,
)
from cmbert_pipe.errors import ConfigError
from cmbert_pipe.metrics import METRIC_NAMES, format_mean_std, format_metric
from cmbert_pipe.outputs import ensure_writable_dir


def metrics_table(title: str, rows: dict[str, dict[str, float]]) -> Table:
    """Metrics as rows, splits as columns (accuracies and F1 in %)."""
    table = Table(title=title)
    table.add_column("metric")
    for split in rows:
        table.add_column(split, justify="right")
    for name in METRIC_NAMES + ("loss",):
        table.add_row(name, *[format_metric(name, m.get(name)) for m in rows.values()])
    return table


def mean_std_table(title: str, ms: dict[str, dict[str, dict[str, float]]]) -> Table:
    """Mean ± std over seeds: metrics as rows, one column per key of ``ms`` (a split, or a
    model), each ``{metric: {"mean": .., "std": ..}}``."""
    table = Table(title=title)
    table.add_column("metric")
    for column in ms:
        table.add_column(column, justify="right")
    for name in METRIC_NAMES:
        table.add_row(name, *[format_mean_std(name, m.get(name)) for m in ms.values()])
    return table


def baseline_table(summary) -> Table:
    """The model beside its baselines (``TrainSummary.baselines``) on the test split (dev when
    the data has no test split), mean ± std over the same seeds."""
    split = "test" if "test" in summary.mean_std else next(iter(summary.mean_std))
    cols = {summary.model_config.model: summary.mean_std.get(split, {})}
    for name, base in summary.baselines.items():
        what = ("audio only" if name == "audio" else "text only")
        cols[f"{base.model_config.model} ({what})"] = base.mean_std.get(split, {})
    return mean_std_table(f"{split} split: the model beside its baselines (same seeds)", cols)


MODEL, TRAIN = ModelConfig(), TrainConfig()  # the defaults the help shows
ModelName = choices("ModelName", MODEL_NAMES)
AudioHead = choices("AudioHead", AUDIO_HEADS)
Objective = choices("Objective", OBJECTIVES)
AudioNorm = choices("AudioNorm", AUDIO_NORMS)
SelectMetric = choices("SelectMetric", SELECT_METRICS)
Scaling = choices("Scaling", SCALINGS)
ClsAudio = choices("ClsAudio", CLS_AUDIO)
Amp = choices("Amp", AMP_MODES)
# parameter -> config key: these options build ModelConfig / TrainConfig through the loader
TRAIN_KEYS = {
    "model": "model.model", "bert": "model.bert", "max_len": "model.max_len",
    "scaling": "model.scaling", "cls_audio": "model.cls_audio",
    "epochs": "train.epochs", "batch_size": "train.batch_size", "lr_head": "train.lr_head",
    "lr_encoder": "train.lr_encoder", "ema": "train.ema", "device": "train.device",
    "amp": "train.amp", "threads": "train.threads", "max_train": "train.max_train",
    "audio_head": "model.audio_head", "audio_head_dim": "model.audio_head_dim",
    "objective": "model.objective", "audio_norm": "model.audio_norm",
    "modality_dropout": "model.modality_dropout", "frame_pool": "model.frame_pool",
    "audio_aux_weight": "model.audio_aux_weight", "audio_start": "model.audio_start",
    "lr_fusion": "train.lr_fusion", "warmup": "train.warmup",
    "warmup_encoder": "train.warmup_encoder", "warmup_fusion": "train.warmup_fusion",
    "warmup_head": "train.warmup_head", "patience": "train.patience",
    "select_metric": "train.select_metric",
}


@app.command("train", short_help="Train CM-BERT, T-BERT, MAG-BERT, CMSBERT-CLR or the audio-only model over several seeds on a cache or text TSVs.")
def train_cmd(
    ctx: typer.Context,
    cache: Path | None = typer.Argument(None, help="Feature cache written by `cmbert extract-audio`."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Output folder: seed-N bundles + summary.json."),
    text_only: Path | None = typer.Option(None, "--text-only", help="Folder with train/dev/test.tsv (text<TAB>label); trains without audio."),
    model: ModelName = typer.Option(MODEL.model, "--model", help="Which model."),
    bert: str = typer.Option(MODEL.bert, "--bert", help="Encoder checkpoint folder or name (default: embedded all-MiniLM-L6-v2)."),
    seeds: int = typer.Option(len(TRAIN.seeds), "--seeds", help="Number of seeds (seed-start, seed-start+1, ...); mean ± std reported."),
    seed_start: int = typer.Option(TRAIN.seeds[0], "--seed-start", help="First seed."),
    epochs: int = typer.Option(TRAIN.epochs, "--epochs"),
    batch_size: int = typer.Option(TRAIN.batch_size, "--batch-size"),
    max_len: int = typer.Option(MODEL.max_len, "--max-len", help="Word-pieces incl. [CLS]/[SEP]."),
    scaling: Scaling = typer.Option(MODEL.scaling, "--scaling", help="paper, or reference (the released code)."),
    cls_audio: ClsAudio = typer.Option(MODEL.cls_audio, "--cls-audio", help="Audio at [CLS]: zero (paper) or the mean word audio."),
    lr_head: float = typer.Option(TRAIN.lr_head, "--lr-head", help="Learning rate outside the encoder."),
    lr_encoder: float = typer.Option(TRAIN.lr_encoder, "--lr-encoder"),
    ema: float = typer.Option(TRAIN.ema, "--ema", help="EMA decay of the weights (0 = off); EMA weights evaluated and saved."),
    device: str = typer.Option(TRAIN.device, "--device", help="auto | cpu | cuda | cuda:N"),
    amp: Amp = typer.Option(TRAIN.amp, "--amp", help="auto: bf16/fp16 on CUDA, off on CPU."),
    threads: int = typer.Option(TRAIN.threads, "--threads", help="torch CPU threads (0 = default)."),
    max_train: int = typer.Option(TRAIN.max_train, "--max-train", help="Use only the first N training examples (0 = all)."),
    set_: list[str] = typer.Option([], "--set", help="Any model or training key, as in a recipe: --set model.options.beta=0.5 --set train.warmup=0.2 (repeatable; see docs/configuration.md)."),
    min_align_quality: float | None = typer.Option(None, "--min-align-quality", help="Leave out utterances whose alignment quality (0-1, see docs/alignment.md) is below this."),
    audio_head: AudioHead = typer.Option(MODEL.audio_head, "--audio-head", help="Acoustic path fused with [CLS] by a learned gate: none (the model as published), pool (mean/std/first/last word vectors), encoder (learned; also reads the frames when the cache has them). For --model audio, none means pool."),
    audio_head_dim: int = typer.Option(MODEL.audio_head_dim, "--audio-head-dim", help="Size of the utterance audio vector."),
    frames: bool | None = typer.Option(None, "--frames/--no-frames", help="encoder head: read the 10 ms frames (default: when the cache has them)."),
    frame_pool: int = typer.Option(MODEL.frame_pool, "--frame-pool", help="encoder head: average the 10 ms frames in groups of N before its convolutions (N × 10 ms steps; 1 = as they are)."),
    objective: Objective = typer.Option(MODEL.objective, "--objective", help="regression (MSE), binary (class-balanced cross-entropy on the sign; labels 0 left out) or class7."),
    audio_norm: AudioNorm = typer.Option(MODEL.audio_norm, "--audio-norm", help="Standardise audio with the training statistics (global) or per speaker (new speakers: from their own unlabelled audio)."),
    modality_dropout: float = typer.Option(MODEL.modality_dropout, "--modality-dropout", help="Training only: the share of utterances whose text ([CLS]) is hidden from the acoustic fusion, so the acoustic path learns to carry the score alone (0 = off)."),
    audio_aux_weight: float = typer.Option(MODEL.audio_aux_weight, "--audio-aux-weight", help="Weight of an auxiliary audio-only loss: an output layer on the acoustic path alone, trained on the same labels (0 = off)."),
    audio_start: bool = typer.Option(MODEL.audio_start, "--audio-start/--no-audio-start", help="Train the audio-only model first and start from it: its head and output layer are copied in, the model's own output layer starts at zero, and the text is learnt as what it adds (kept only where dev says so)."),
    lr_fusion: float = typer.Option(TRAIN.lr_fusion, "--lr-fusion", help="Learning rate of the fusion layers and acoustic path (0 = --lr-head)."),
    warmup: float = typer.Option(TRAIN.warmup, "--warmup", help="Fraction of steps with linear warm-up, then linear decay."),
    warmup_encoder: float = typer.Option(TRAIN.warmup_encoder, "--warmup-encoder", help="Warm-up fraction of the encoder (< 0 = --warmup)."),
    warmup_fusion: float = typer.Option(TRAIN.warmup_fusion, "--warmup-fusion", help="Warm-up fraction of the fusion layers (< 0 = --warmup)."),
    warmup_head: float = typer.Option(TRAIN.warmup_head, "--warmup-head", help="Warm-up fraction of the output layer (< 0 = --warmup)."),
    patience: int = typer.Option(TRAIN.patience, "--patience", help="Early stopping: stop after N epochs without a better dev score (0 = off)."),
    select_metric: SelectMetric = typer.Option(TRAIN.select_metric, "--select-metric", help="Dev score that picks the best epoch and drives early stopping: loss (the published rule), mae, or a metric to maximise such as bacc2_non0."),
    baselines: str = typer.Option(",".join(TRAIN.baselines), "--baselines", help="Reference models trained beside MODEL on the same splits and seeds and shown next to it: audio (the audio-only model, no BERT: cheap), tbert (text only), comma-separated; '' = none."),
    ddp_procs: int = typer.Option(0, "--ddp", help="Train with DistributedDataParallel on N "
                                  "processes of this host (torchrun; gloo on CPU, one GPU each "
                                  "on CUDA). The global batch stays --batch-size."),
) -> None:
    """Train MODEL on a cache (labels and splits from its corpus) or on text TSVs; one bundle per
    seed in OUT/seed-N, metrics per split and seed plus mean ± std in OUT/summary.json. Seeds
    already finished in OUT are skipped (resume); Ctrl-C leaves the best checkpoint so far.

    \b
      cmbert train runs/cache --out runs/cmbert --model cmbert --seeds 5
      cmbert train runs/cache --out runs/mag --model magbert --set model.options.beta=0.5
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if ddp_procs and int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        _launch_ddp(ddp_procs, out_dir)
        return
    with user_errors(), _distributed_run(device, out_dir) as dist_ctx:
        computed = {}
        if typed_here(ctx, "seeds") or typed_here(ctx, "seed_start"):
            computed["train.seeds"] = ("--seeds", list(range(seed_start, seed_start + seeds)))
        if typed_here(ctx, "baselines"):
            computed["train.baselines"] = ("--baselines",
                                           [b.strip() for b in baselines.split(",") if b.strip()])
        typed = typed_options(ctx, TRAIN_KEYS, set_, computed, model=ModelConfig,
                              train=TrainConfig)
        mcfg, tcfg = typed["model"], typed["train"]
        if (cache is None) == (text_only is None):
            raise ConfigError("give either a CACHE folder or --text-only TSV_DIR")
        from cmbert_pipe.train import (
            audio_dim_of,
            cache_has_frames,
            load_cache_examples,
            load_text_examples,
            train_seeds,
        )

        ensure_writable_dir(out_dir)  # a read-only --out fails now, not after a whole seed
        if frames is None:  # the encoder reads frames whenever the cache has them
            frames = (mcfg.audio_head == "encoder" and cache is not None
                      and cache_has_frames(cache))
        if text_only is not None:
            examples, settings = load_text_examples(text_only)
        else:
            examples, settings = load_cache_examples(cache, frames=frames,
                                                     min_align_quality=min_align_quality)
            if dist_ctx.is_main:
                console.print(f"alignments: {settings['align_methods']}"
                              + (f"; {settings['left_out_for_align_quality']} left out (quality "
                                 f"below {min_align_quality})" if min_align_quality is not None
                                 else ""))
        mcfg = mcfg.replace(audio_dim=audio_dim_of(examples, mcfg.audio_dim), frames=frames)
        epochs = tcfg.epochs
        seed_list = list(tcfg.seeds)
        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                            MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                            TimeElapsedColumn(), console=console, disable=not dist_ctx.is_main)
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
            console.print(f"[yellow]interrupted[/]: best checkpoint so far kept in {shown(out_dir)}")
            raise typer.Exit(130) from None
        if not dist_ctx.is_main:
            return
        out.print(mean_std_table(f"{mcfg.model} over {len(seed_list)} seed(s), mean ± std",
                                 summary.mean_std))
        if summary.baselines:
            out.print(baseline_table(summary))
        for note in summary.notes:
            console.print(f"note: {note}")
        console.print(f"summary: {shown(out_dir / 'summary.json')}  wall {summary.wall_s:.0f} s")


def _launch_ddp(nproc: int, out_dir: Path) -> None:
    """``--ddp N``: this command again under torchrun; a failed rank ends it with one message."""
    from cmbert_pipe import distributed  # torch: imported by the commands that need it

    with user_errors():
        code = distributed.launch(nproc, distributed.strip_option(sys.argv[1:], "--ddp"))
    if code != 0:
        console.print(f"[bold red]error:[/] a training process failed (exit code {code}; its "
                      f"message is above). Finished seeds are kept in {out_dir}: run the same "
                      "command again to resume from the last finished seed.")
        raise typer.Exit(1)


@contextlib.contextmanager
def _distributed_run(device: str, out_dir: Path):
    """Join torchrun's process group (if any) for the command; a rank that loses its peers
    stops with one line instead of a traceback."""
    from cmbert_pipe import distributed  # torch: imported by the commands that need it

    ctx = distributed.init_from_env(device)
    try:
        yield ctx
    except (RuntimeError, OSError) as e:
        if not ctx.active:
            raise
        console.print(f"[bold red]error:[/] rank {ctx.rank} of {ctx.world_size}: lost another "
                      f"training process ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
                      f"Finished seeds are kept in {out_dir}; re-run to resume.")
        raise typer.Exit(1) from None
    finally:
        distributed.shutdown()


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
        from cmbert_pipe.model.bundle import read_config
        from cmbert_pipe.train import (
            evaluate_bundle_with_notes,
            load_cache_examples,
            load_text_examples,
        )

        if (cache is None) == (text_only is None):
            raise ConfigError("give either a CACHE folder or --text-only TSV_DIR")
        frames = read_config(model_dir).frames
        examples, _ = (load_text_examples(text_only) if text_only is not None
                       else load_cache_examples(cache, frames=frames))
        metrics, note = evaluate_bundle_with_notes(model_dir, examples, split, device)
        if as_json:
            out.print_json(json.dumps(metrics))
        else:
            out.print(metrics_table(str(model_dir), metrics))
        if note:
            console.print(f"note: {note}")
