"""Train and evaluate sentiment models on cached aligned tensors (or on text alone).

The loop is model-agnostic: anything in :data:`cmbert_pipe.model.MODELS` trains through it.
Published CM-BERT recipe (Yang, Xu & Gao, ACM MM 2020; docs/design.md, "CM-BERT here"): MSE,
batch 24, 3 epochs, AdamW with 10 % linear warm-up then linear decay, weight decay 0.01 except
biases and LayerNorm, fusion head at 1e-2 and encoder at 2e-5, embeddings frozen, the epoch
with the lowest dev loss kept, five seeds reported as mean ± std.

    >>> examples, settings = load_cache_examples("runs/ravdess-cache")
    >>> summary = train_seeds(examples, ModelConfig(model="cmbert"), TrainConfig(), [0, 1],
    ...                       "runs/model", settings=settings)

GPU steps run under bf16 (or fp16 with a grad scaler) autocast and never synchronise with the
host inside a step: losses are summed on the device and read once per epoch.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import math
import platform
import random
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmbert_pipe import __version__
from cmbert_pipe import distributed as ddp
from cmbert_pipe.cache import FeatureCache
from cmbert_pipe.config import LEGACY_FRAME_POOL, ModelConfig, TrainConfig
from cmbert_pipe.errors import ConfigError, ModelError
from cmbert_pipe.io import atomic_write_text
from cmbert_pipe.metrics import mean_std, sentiment_metrics
from cmbert_pipe.model import SentimentModel, build_model
from cmbert_pipe.model.bundle import load_bundle, save_bundle
from cmbert_pipe.model.ema import EMA
from cmbert_pipe.model.inputs import AudioStats, load_tokenizer, prepare_batch
from cmbert_pipe.model.objectives import balanced_class_weights, objective_loss
from cmbert_pipe.schema import SPLITS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    """One labelled utterance as the trainer sees it."""

    id: str
    words: tuple[str, ...]
    word_features: np.ndarray | None  # (n_words, D) raw (not standardised), None = text only
    label: float
    split: str
    speaker: str = ""  # the corpus's speaker field ("" = unknown); audio_norm="speaker" uses it
    frames: np.ndarray | None = None  # (T, D) raw 10 ms frames (caches built with --frames)


# -- data -------------------------------------------------------------------------------------
def load_cache_examples(cache_root: str | Path, frames: bool = False,
                        min_align_quality: float | None = None
                        ) -> tuple[list[Example], dict[str, Any]]:
    """Labelled examples of a feature cache, and the pipeline settings of its ``cache.json``.

    ``frames``: also read each entry's (T, D) frame matrix (ModelError if the cache was built
    without ``--frames``). With ``min_align_quality``, utterances whose alignment quality is
    lower (or unknown) are left out; ``settings["align_methods"]`` counts the alignment methods
    of those used."""
    from cmbert_pipe.align.quality import describe_methods, passes

    cache = FeatureCache(cache_root)
    info = cache.info()
    out, methods, left_out = [], [], 0
    for u, rec in cache.read_index():
        if u.label is None:
            continue
        if not passes(rec.align_quality, min_align_quality):
            left_out += 1
            continue
        methods.append(rec.align_method)
        entry = cache.get(rec.key)
        if frames and "frames" not in entry.arrays:
            raise ModelError("the cache has no frames (build it with `cmbert extract-audio "
                             "--frames`)", cache_root)
        out.append(Example(u.id, tuple(str(w) for w in entry.arrays["words"]),
                           np.asarray(entry.arrays["word_features"], dtype=np.float32),
                           float(u.label), u.split or "", u.speaker or "",
                           np.asarray(entry.arrays["frames"], dtype=np.float32)
                           if frames else None))
    if not out:
        raise ModelError("no labelled utterances in the cache"
                         + (f" with alignment quality >= {min_align_quality}"
                            if min_align_quality is not None else ""), cache_root)
    settings = {"source": "cache", "cache": str(cache_root), "cache_info": info,
                "align_methods": describe_methods(methods), "min_align_quality": min_align_quality,
                "left_out_for_align_quality": left_out,
                "data_sha256": _digest_files([FeatureCache(cache_root).index_path])}
    log.info("alignments used: %s; %d left out by --min-align-quality", settings["align_methods"],
             left_out)
    return out, settings


def cache_has_frames(cache_root: str | Path) -> bool:
    """True if the first indexed entry of the cache keeps its frames."""
    cache = FeatureCache(cache_root)
    rows = cache.read_index()
    return bool(rows) and "frames" in cache.get(rows[0][1].key).arrays


def load_text_examples(tsv_dir: str | Path) -> tuple[list[Example], dict[str, Any]]:
    """``train.tsv``/``dev.tsv``/``test.tsv`` with a header and ``text<TAB>label`` rows."""
    tsv_dir = Path(tsv_dir)
    out = []
    for split in SPLITS:
        path = tsv_dir / f"{split}.tsv"
        if not path.is_file():
            raise ModelError(f"missing {split}.tsv", tsv_dir)
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
        for lineno, row in enumerate(rows[1:], start=2):
            if not row or not "".join(row).strip():
                continue
            try:
                text, label = row[0], float(row[-1])
            except (ValueError, IndexError):
                raise ModelError(f"line {lineno}: expected text<TAB>label, got {row!r}",
                                 path) from None
            out.append(Example(f"{split}-{lineno}", tuple(text.split()), None,
                               max(-3.0, min(3.0, label)), split))
    return out, {"source": "text", "text_dir": str(tsv_dir),
                 "data_sha256": _digest_files([tsv_dir / f"{s}.tsv" for s in SPLITS])}


def _digest_files(paths: Sequence[Path]) -> str:
    """SHA-256 over the bytes of ``paths``: which data a model was trained on. A cache's index
    lists every utterance with its content key, label and split, so it names the data exactly."""
    h = hashlib.sha256()
    for path in paths:
        h.update(Path(path).read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def by_split(examples: Sequence[Example]) -> dict[str, list[Example]]:
    out: dict[str, list[Example]] = {s: [] for s in SPLITS}
    for ex in examples:
        if ex.split in out:
            out[ex.split].append(ex)
    return out


def audio_dim_of(examples: Sequence[Example], default: int) -> int:
    for ex in examples:
        if ex.word_features is not None and ex.word_features.ndim == 2:
            return int(ex.word_features.shape[1])
    return default


# -- acoustic standardisation -----------------------------------------------------------------
SPEAKER_NORM_NOTE = ("audio standardised per speaker: each speaker's statistics were computed "
                     "from that speaker's own (unlabelled) audio in the scored data")


@dataclass(frozen=True)
class AudioNorm:
    """How the audio of a set of examples is standardised before batching.

    ``word_stats``/``frame_stats`` go to :func:`prepare_batch` (None when the examples were
    already standardised per speaker); ``note`` says what was done, for reports."""

    examples: list[Example]
    word_stats: AudioStats | None
    frame_stats: AudioStats | None
    note: str = ""


def fit_stats(examples: Sequence[Example], dim: int) -> tuple[AudioStats, AudioStats | None]:
    """Global word and frame statistics of ``examples`` (frame stats None without frames)."""
    words = AudioStats.from_features([ex.word_features for ex in examples
                                      if ex.word_features is not None], dim)
    frames = [ex.frames for ex in examples if ex.frames is not None]
    return words, (AudioStats.from_features(frames, dim) if frames else None)


def standardise_audio(examples: Sequence[Example], mode: str, dim: int,
                      word_stats: AudioStats, frame_stats: AudioStats | None) -> AudioNorm:
    """``"global"``: the given (training) statistics, applied in :func:`prepare_batch`.
    ``"speaker"``: each speaker's own statistics over every example of that speaker in
    ``examples`` (labels unused); examples without a speaker fall back to the global ones."""
    if mode == "global":
        return AudioNorm(list(examples), word_stats, frame_stats)
    groups: dict[str, list[Example]] = {}
    for ex in examples:
        groups.setdefault(ex.speaker, []).append(ex)
    per_speaker = {spk: fit_stats(xs, dim) for spk, xs in groups.items() if spk}
    out, unknown = [], 0
    for ex in examples:
        ws, fs = per_speaker.get(ex.speaker, (word_stats, frame_stats))
        unknown += ex.speaker not in per_speaker
        fs = fs or frame_stats
        out.append(dataclasses.replace(
            ex,
            word_features=None if ex.word_features is None else ws.standardise(ex.word_features),
            frames=None if ex.frames is None or fs is None else fs.standardise(ex.frames)))
    note = f"{SPEAKER_NORM_NOTE} ({len(per_speaker)} speaker(s)"
    note += f"; {unknown} example(s) without a speaker used the training statistics)" \
        if unknown else ")"
    return AudioNorm(out, None, None, note)


# -- device -----------------------------------------------------------------------------------
def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but torch sees no CUDA device")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ConfigError(f"unknown device {name!r} (auto, cpu, cuda, cuda:N)")
    return torch.device(name)


def pick_amp(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    if amp in ("fp16", "auto"):
        return torch.float16
    raise ConfigError(f"unknown amp {amp!r} (auto, off, bf16, fp16)")


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def linear_warmup_decay(total_steps: int, warmup: float) -> Callable[[int], float]:
    """LR multiplier: 0 → 1 over the first ``warmup`` fraction of steps, then 1 → 0."""
    warm = max(1, int(round(total_steps * warmup))) if warmup > 0 else 0

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))

    return factor


# -- batches ----------------------------------------------------------------------------------
def make_batches(examples: Sequence[Example], tokenizer, config: ModelConfig,
                 stats: AudioStats | None, batch_size: int,
                 order: Sequence[int] | None = None,
                 frame_stats: AudioStats | None = None) -> list[dict[str, torch.Tensor]]:
    idx = list(order) if order is not None else list(range(len(examples)))
    out = []
    for i in range(0, len(idx), batch_size):
        chunk = [examples[j] for j in idx[i:i + batch_size]]
        items = [(ex.words, ex.word_features, ex.frames) if config.frames
                 else (ex.words, ex.word_features) for ex in chunk]
        out.append(prepare_batch(tokenizer, items, config, stats,
                                 labels=[ex.label for ex in chunk], frame_stats=frame_stats))
    return out


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def predict_logits(model: SentimentModel, examples: Sequence[Example], tokenizer,
                   stats: AudioStats | None, batch_size: int = 64,
                   device: torch.device | str = "cpu", amp_dtype: torch.dtype | None = None,
                   frame_stats: AudioStats | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Scores (N,) and head outputs (N, K) of ``model`` in eval mode."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    preds, logits = [], []
    for batch in make_batches(examples, tokenizer, model.config, stats, batch_size,
                              frame_stats=frame_stats):
        batch = _to(batch, device)
        batch.pop("labels")
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):
            out = model(**batch)
        preds.append(out.pred.float())
        logits.append((out.logits if out.logits is not None else out.pred[:, None]).float())
    model.train(was_training)
    if not preds:
        return np.zeros(0), np.zeros((0, 1))
    return torch.cat(preds).cpu().numpy(), torch.cat(logits).cpu().numpy()


def predict_examples(model: SentimentModel, examples: Sequence[Example], tokenizer,
                     stats: AudioStats | None, batch_size: int = 64,
                     device: torch.device | str = "cpu",
                     amp_dtype: torch.dtype | None = None,
                     frame_stats: AudioStats | None = None) -> np.ndarray:
    """Predictions (N,) of ``model`` in eval mode."""
    return predict_logits(model, examples, tokenizer, stats, batch_size, device, amp_dtype,
                          frame_stats)[0]


def score(model, examples, tokenizer, stats, batch_size=64, device="cpu",
          amp_dtype=None, frame_stats=None) -> dict[str, float]:
    """Every metric plus ``loss``: the model's objective on ``examples`` (MSE for regression,
    the class-weighted cross-entropy for ``binary``/``class7``; auxiliary losses left out)."""
    preds, logits = predict_logits(model, examples, tokenizer, stats, batch_size, device,
                                   amp_dtype, frame_stats)
    labels = np.array([ex.label for ex in examples], dtype=np.float64)
    m = sentiment_metrics(preds, labels)
    objective = model.config.objective
    if objective == "regression":
        m["loss"] = float(np.mean((preds - labels) ** 2))
    else:
        weight = getattr(model, "class_weight", None)
        m["loss"] = float(objective_loss(
            objective, torch.from_numpy(logits), torch.from_numpy(preds),
            torch.from_numpy(labels).float(),
            None if weight is None else weight.detach().cpu()))
    m["n"] = len(examples)
    return m


# -- one seed ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeedResult:
    """One trained seed: metrics per split of its best epoch, and how training went."""

    seed: int
    metrics: dict[str, dict[str, float]]  # split -> metric -> value
    best_epoch: int
    epoch_seconds: tuple[float, ...]
    train_samples_per_s: float
    bundle: Path
    interrupted: bool = False
    stopped_early: bool = False  # early stopping ended training before `epochs`
    resumed: bool = False  # finished by an earlier run; read back from its bundle
    note: str = ""  # e.g. how the audio was standardised
    retrained_because: str = ""  # a finished seed found trained with other settings, and why


def versions() -> dict[str, str]:
    import transformers  # already loaded by the encoder; imported here for its version only

    return {"cmbert_pipe": __version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def _warmups(train_config: TrainConfig) -> dict[str, float]:
    base = train_config.warmup
    return {"encoder": base if train_config.warmup_encoder < 0 else train_config.warmup_encoder,
            "fusion": base if train_config.warmup_fusion < 0 else train_config.warmup_fusion,
            "head": base if train_config.warmup_head < 0 else train_config.warmup_head}


def _check_audio(examples: Sequence[Example], model_config: ModelConfig) -> None:
    if model_config.frames and not any(ex.frames is not None for ex in examples):
        raise ConfigError("frames=true but the examples carry no frames (build the cache with "
                          "`cmbert extract-audio --frames`)")
    if model_config.model == "audio" and not any(ex.word_features is not None
                                                 for ex in examples):
        raise ConfigError("model 'audio' needs audio features (a cache), not text only")
    if model_config.audio_start and not any(ex.word_features is not None for ex in examples):
        raise ConfigError("audio_start needs audio features (a cache), not text only: there "
                          "is no audio-only model to start from")


def train_one(
    examples: Sequence[Example],
    model_config: ModelConfig,
    train_config: TrainConfig,
    seed: int,
    out_dir: str | Path,
    settings: dict[str, Any] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    start_from: str | Path | None = None,
) -> SeedResult:
    """Train one seed; write the bundle of the best epoch to ``out_dir``: the lowest dev loss
    (``select_metric="loss"``, the published rule) or the best dev value of another metric.

    ``start_from``: the bundle of a trained audio-only model, for a model with
    ``audio_start`` (:meth:`SentimentModel.start_from_audio`). The start is scored on dev like
    an epoch and is the result (``best_epoch`` -1) when no epoch beats it.

    The bundle is (re)written every time dev loss improves, so an interrupted run
    (``KeyboardInterrupt``) leaves the best checkpoint so far; the interrupt is re-raised.
    With ``patience`` > 0 training stops once that many epochs passed without a better dev
    score. The dev loss is the objective's (MSE, or the class-weighted cross-entropy)."""
    out_dir = Path(out_dir)
    _check_audio(examples, model_config)
    raw_train = by_split(examples)["train"][: train_config.max_train or None]
    if not raw_train:
        raise ModelError("no training examples (no utterance has split 'train')")
    if train_config.threads:
        torch.set_num_threads(train_config.threads)
    device = ddp.rank_device(pick_device(train_config.device))
    amp_dtype = pick_amp(train_config.amp, device)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    set_seed(seed)

    tokenizer = load_tokenizer(model_config.bert)
    with_audio = any(ex.word_features is not None for ex in raw_train)
    if with_audio:
        stats, frame_stats = fit_stats(raw_train, model_config.audio_dim)
    else:
        stats, frame_stats = AudioStats.identity(model_config.audio_dim), None
    if not model_config.frames:
        frame_stats = None
    norm = standardise_audio(examples, model_config.audio_norm, model_config.audio_dim, stats,
                             frame_stats)
    splits = by_split(norm.examples)
    train = splits["train"][: train_config.max_train or None]
    dev = splits["dev"] or train
    model = build_model(model_config).to(device)
    if model_config.audio_start:
        if start_from is None:
            raise ModelError("audio_start: the trained audio-only model to start from is "
                             "missing (train_seeds trains it first)")
        model.start_from_audio(load_bundle(start_from, device).model)
    model.set_class_weights(balanced_class_weights(model_config.objective,
                                                   [ex.label for ex in train]))
    model.train()
    train_model = ddp.wrap(model, device)  # DistributedDataParallel under torchrun
    batch_size = ddp.local_batch_size(train_config.batch_size)  # this rank's share
    main = ddp.current().is_main  # evaluates and writes; the other ranks only train
    groups = model.param_groups(train_config.lr_head, train_config.lr_encoder,
                                train_config.weight_decay,
                                train_config.lr_fusion if train_config.lr_fusion > 0 else None)
    opt_kwargs = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.AdamW([{k: v for k, v in g.items() if k != "name"} for g in groups],
                                  **opt_kwargs)
    steps_per_epoch = math.ceil(len(ddp.shard(range(len(train)))) / batch_size)
    total_steps = steps_per_epoch * train_config.epochs
    warmups = _warmups(train_config)
    if len(set(warmups.values())) == 1:
        schedule = linear_warmup_decay(total_steps, train_config.warmup)
    else:
        schedule = [linear_warmup_decay(total_steps, warmups[g["part"]]) for g in groups]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    ema = EMA(model, train_config.ema) if train_config.ema > 0 else None
    gen = torch.Generator().manual_seed(seed)

    run_settings = dict(settings or {}, train=train_config.optimisation(), seed=seed,
                        versions=versions(), device=str(device),
                        amp=str(amp_dtype) if amp_dtype else "off")
    if norm.note:
        run_settings["audio_norm_note"] = norm.note
    best_loss, best_epoch, epoch_seconds, interrupted = math.inf, -1, [], False
    n_trained, t_train, stale, stopped_early, have_best = 0, 0.0, 0, False, False

    def save(path, net, metrics, extra_settings):
        save_bundle(path, net, tokenizer, stats, dict(run_settings, **extra_settings), metrics,
                    frame_stats=frame_stats)

    def consider(epoch: int) -> tuple[dict[str, float], bool]:
        """Score the model on dev; keep it (write the bundle) if it is the best so far."""
        nonlocal best_loss, best_epoch, stale, have_best
        ctx = ema.applied(model) if ema is not None else _nullcontext(model)
        with ctx:
            dev_m = score(model, dev, tokenizer, norm.word_stats,
                          train_config.eval_batch_size, device, amp_dtype, norm.frame_stats)
            # the selection score, lower is better (the NaN of a constant prediction's
            # correlation counts as the worst)
            sel = dev_m[train_config.select_metric]
            sel = (sel if train_config.select_metric in ("loss", "mae") else -sel)
            sel = math.inf if sel != sel else sel
            improved = sel < best_loss or not have_best
            if improved:
                best_loss, best_epoch, stale, have_best = sel, epoch, 0, True
                save(out_dir, model, {"dev": dev_m, "final": False}, {"best_epoch": epoch})
            else:
                stale += 1
        return dev_m, improved

    try:
        if model_config.audio_start and main:  # the start itself is a candidate ("epoch -1")
            dev_m, _ = consider(-1)
            log.info("seed %d: the audio-only start scores dev loss %.4f", seed, dev_m["loss"])
        for epoch in range(train_config.epochs):
            t0 = time.perf_counter()
            order = ddp.shard(torch.randperm(len(train), generator=gen).tolist())
            batches = make_batches(train, tokenizer, model_config, norm.word_stats, batch_size,
                                   order, norm.frame_stats)
            loss_sum = torch.zeros((), device=device)
            for i, batch in enumerate(batches):
                batch = _to(batch, device)
                with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                                    enabled=amp_dtype is not None):
                    loss = train_model(**batch).loss
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                if ema is not None:
                    ema.update(model)
                loss_sum += loss.detach().float()
                if on_step is not None:
                    on_step(i + 1, len(batches))
            # one host sync per epoch (and one all-reduce under DDP)
            train_loss = float(ddp.mean_over_ranks(loss_sum)) / max(1, len(batches))
            dt = time.perf_counter() - t0
            epoch_seconds.append(dt)
            n_trained += len(train)
            t_train += dt
            if not main:  # rank 0 evaluates on the whole dev split and writes the bundle
                if train_config.patience and _stop_flag(False, device):
                    stopped_early = True
                    break
                continue
            dev_m, improved = consider(epoch)
            if on_epoch is not None:
                on_epoch(epoch, {"train_loss": train_loss, "epoch_s": dt, "improved": improved,
                                 **{f"dev_{k}": v for k, v in dev_m.items()}})
            log.info("seed %d epoch %d: train loss %.4f, dev loss %.4f%s", seed, epoch,
                     train_loss, dev_m["loss"], " (best)" if improved else "")
            stop = stale >= train_config.patience and epoch + 1 < train_config.epochs
            if train_config.patience and _stop_flag(stop, device):
                stopped_early = True
                log.info("seed %d: early stop after epoch %d (%d epoch(s) without a better "
                         "dev loss)", seed, epoch, stale)
                break
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted: the best checkpoint so far is in %s", out_dir)
        raise
    finally:
        # freed before the final scoring (the closures above are done with them)
        model = train_model = optimizer = None
    ddp.barrier()  # the best bundle is written
    if not main:
        ddp.barrier()  # rank 0 scores and writes the final bundle
        return SeedResult(seed, {}, best_epoch, tuple(epoch_seconds), float("nan"), out_dir,
                          stopped_early=stopped_early)
    # Final scores with the best checkpoint, reloaded exactly as a user would.
    bundle = load_bundle(out_dir, device)
    metrics = {s: score(bundle.model, xs, bundle.tokenizer, norm.word_stats,
                        train_config.eval_batch_size, device, amp_dtype, norm.frame_stats)
               for s, xs in splits.items() if xs}
    rate = n_trained / t_train if t_train > 0 else float("nan")
    final_settings = dict(bundle.settings, epoch_seconds=epoch_seconds,
                          train_samples_per_s=rate, peak_memory=peak_memory(device),
                          stopped_early=stopped_early)
    save_bundle(out_dir, bundle.model, bundle.tokenizer, bundle.audio_stats, final_settings,
                dict(metrics, final=True, best_epoch=best_epoch), frame_stats=frame_stats)
    ddp.barrier()
    return SeedResult(seed, metrics, best_epoch, tuple(epoch_seconds), rate, out_dir,
                      interrupted, stopped_early, note=norm.note)


def _stop_flag(stop: bool, device: torch.device) -> bool:
    """Rank 0's early-stopping decision, shared with every rank under DDP."""
    if not ddp.current().active:
        return stop
    return float(ddp.mean_over_ranks(torch.tensor(float(stop), device=device))) > 0


class _nullcontext:
    def __init__(self, value):
        self.value = value

    def __enter__(self):
        return self.value

    def __exit__(self, *exc):
        return False


def peak_memory(device: torch.device) -> dict[str, float]:
    """Peak resident memory of this process (MiB) and, on CUDA, peak allocated GPU memory."""
    out = {"max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        out["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


# -- several seeds ----------------------------------------------------------------------------
IGNORED_ON_RESUME = ("threads", "device", "seeds", "baselines")  # how fast, which other seeds
# or which baselines beside it: not what a seed learns


def _plain(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), for comparing."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def seed_is_current(seed_dir: Path, model_config: ModelConfig, train_config: TrainConfig,
                    data_sha256: str | None) -> tuple[bool, str]:
    """Whether the finished bundle in ``seed_dir`` was trained with exactly these settings on
    exactly this data: (True, "") or (False, what differs, in words)."""
    try:
        config = json.loads((seed_dir / "config.json").read_text(encoding="utf-8"))
        settings = json.loads((seed_dir / "settings.json").read_text(encoding="utf-8"))
        config.pop("bundle_format", None)
    except (OSError, ValueError, AttributeError) as e:
        return False, f"its config cannot be read ({type(e).__name__})"
    changes = []
    # keys a bundle predates (options added later) read as their defaults
    had = {**_plain(ModelConfig(model=config.get("model", model_config.model)).to_dict()),
           "frame_pool": LEGACY_FRAME_POOL, **_plain(config)}
    want = _plain(model_config.to_dict())
    if not had.get("frames") and not want.get("frames"):  # read only by the frame encoder
        had.pop("frame_pool", None), want.pop("frame_pool", None)
    changes += [f"model {k}: {had.get(k)!r} -> {want.get(k)!r}"
                for k in sorted(set(had) | set(want)) if had.get(k) != want.get(k)]
    had = {**_plain(TrainConfig().to_dict()), **_plain(settings.get("train") or {})}
    want = _plain(train_config.to_dict())
    changes += [f"train {k}: {had.get(k)!r} -> {want.get(k)!r}"
                for k in sorted(set(had) | set(want))
                if k not in IGNORED_ON_RESUME and had.get(k) != want.get(k)]
    if settings.get("data_sha256") != data_sha256:
        changes.append("the training data (cache index or TSVs) differ"
                       if settings.get("data_sha256") else
                       "the bundle does not record which data it was trained on")
    return (not changes), "; ".join(changes)


def completed_seed(seed_dir: Path) -> dict[str, Any] | None:
    """Metrics of a finished seed bundle (for resuming), or None."""
    path = seed_dir / "metrics.json"
    if not path.is_file():
        return None
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    return m if m.get("final") else None


@dataclass(frozen=True)
class TrainSummary:
    """What :func:`train_seeds` did: one :class:`SeedResult` per seed, mean ± std per split
    (``mean_std[split][metric] = {"mean": .., "std": ..}``), the effective configs and versions.
    ``to_dict()`` is what ``OUT/summary.json`` holds."""

    model_config: ModelConfig
    train_config: TrainConfig
    settings: dict[str, Any]
    seeds: tuple[int, ...]
    per_seed: tuple[SeedResult, ...]
    mean_std: dict[str, dict[str, dict[str, float]]]
    versions: dict[str, str]
    wall_s: float
    out_dir: Path
    # reference models trained beside this one (TrainConfig.baselines): name -> their summary
    baselines: dict[str, TrainSummary] = field(default_factory=dict)

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(sorted({r.note for r in self.per_seed if r.note}))

    def test_metric(self, name: str, split: str = "test") -> tuple[float, float]:
        """(mean, std) of one metric on one split."""
        ms = self.mean_std[split][name]
        return ms["mean"], ms["std"]

    def to_dict(self) -> dict[str, Any]:
        per_seed = {}
        for r in self.per_seed:
            row: dict[str, Any] = {"metrics": r.metrics, "best_epoch": r.best_epoch}
            if r.resumed:
                row["resumed"] = True
            else:
                row.update(epoch_seconds=list(r.epoch_seconds),
                           train_samples_per_s=r.train_samples_per_s,
                           stopped_early=r.stopped_early)
            if r.retrained_because:
                row["retrained_because"] = r.retrained_because
            per_seed[str(r.seed)] = row
        return {"model_config": self.model_config.to_dict(),
                "train_config": self.train_config.to_dict(), "settings": self.settings,
                "seeds": list(self.seeds), "per_seed": per_seed, "mean_std": self.mean_std,
                "notes": list(self.notes), "versions": self.versions, "wall_s": self.wall_s,
                "baselines": {name: {"model_config": b.model_config.to_dict(),
                                     "mean_std": b.mean_std, "out_dir": str(b.out_dir)}
                              for name, b in self.baselines.items()}}


def audio_model_config(model_config: ModelConfig) -> ModelConfig:
    """The audio-only model beside ``model_config``: its acoustic head (``pool`` when it has
    none), objective, standardisation and dropout."""
    head = model_config.audio_head if model_config.audio_head != "none" else "pool"
    return ModelConfig(
        model="audio", audio_dim=model_config.audio_dim, audio_head=head,
        audio_head_dim=model_config.audio_head_dim,
        frames=model_config.frames and head == "encoder", frame_pool=model_config.frame_pool,
        objective=model_config.objective, audio_norm=model_config.audio_norm,
        dropout=model_config.dropout)


def baseline_configs(examples: Sequence[Example], model_config: ModelConfig,
                     train_config: TrainConfig) -> dict[str, ModelConfig]:
    """The reference models of ``train_config.baselines`` that make sense beside
    ``model_config``: ``audio`` (the audio-only model with the model's acoustic head, objective
    and standardisation; ``pool`` when the model has no acoustic path) when the data has audio,
    ``tbert`` (text only, the model's encoder and objective); never the model itself. Not under
    DDP (train them in a plain run)."""
    out: dict[str, ModelConfig] = {}
    if ddp.current().world_size > 1:
        return out
    has_audio = any(ex.word_features is not None for ex in examples)
    for name in train_config.baselines:
        if name == model_config.model or (name == "audio" and not has_audio):
            continue
        if name == "audio":
            out[name] = audio_model_config(model_config)
        else:
            out[name] = ModelConfig(model="tbert", bert=model_config.bert,
                                    max_len=model_config.max_len,
                                    objective=model_config.objective,
                                    dropout=model_config.dropout)
    return out


def train_seeds(
    examples: Sequence[Example],
    model_config: ModelConfig,
    train_config: TrainConfig,
    seeds: Sequence[int],
    out_dir: str | Path,
    settings: dict[str, Any] | None = None,
    on_seed: Callable[[int], None] | None = None,
    on_epoch: Callable[[int, int, dict[str, float]], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> TrainSummary:
    """Train every seed into ``out_dir/seed-N`` (skipping seeds already finished there) and
    write ``out_dir/summary.json`` (:meth:`TrainSummary.to_dict`): metrics per split and seed,
    mean ± std, the effective configs, library versions and wall time.

    A model with ``audio_start`` starts each seed from the audio-only model of the same seed,
    trained first into ``out_dir/baselines/audio`` (it is also the ``audio`` baseline)."""
    ddp.local_batch_size(train_config.batch_size)  # under DDP: refused before any work
    _check_audio(examples, model_config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results: list[SeedResult] = []
    baselines: dict[str, TrainSummary] = {}
    start_dir = out_dir / "baselines" / "audio"
    if model_config.audio_start:
        log.info("audio_start: training the audio-only model first, in %s", start_dir)
        baselines["audio"] = train_seeds(examples, audio_model_config(model_config),
                                         dataclasses.replace(train_config, baselines=()), seeds,
                                         start_dir, settings)
    for seed in seeds:
        seed_dir = out_dir / f"seed-{seed}"
        done, changed = completed_seed(seed_dir), ""
        if done is not None:
            current, changed = seed_is_current(seed_dir, model_config, train_config,
                                               (settings or {}).get("data_sha256"))
            if not current:
                log.warning("seed %d in %s was trained differently (%s): training it again",
                            seed, seed_dir, changed)
                done = None
        if done is not None:
            log.info("seed %d already trained in %s with these settings; skipping", seed,
                     seed_dir)
            note = ""
            try:
                note = json.loads((seed_dir / "settings.json").read_text(encoding="utf-8")
                                  ).get("audio_norm_note", "")
            except (OSError, ValueError):
                pass
            results.append(SeedResult(seed, {k: v for k, v in done.items() if k in SPLITS},
                                      int(done.get("best_epoch", -1)), (), float("nan"),
                                      seed_dir, resumed=True, note=note))
            continue
        if on_seed is not None:
            on_seed(seed)
        res = train_one(examples, model_config, train_config, seed, seed_dir, settings,
                        on_epoch=(lambda e, m, s=seed: on_epoch(s, e, m)) if on_epoch else None,
                        on_step=on_step,
                        start_from=start_dir / f"seed-{seed}" if model_config.audio_start
                        else None)
        results.append(dataclasses.replace(res, retrained_because=changed) if changed else res)
    mean_std_ = {split: mean_std([r.metrics[split] for r in results if split in r.metrics])
                 for split in SPLITS if any(split in r.metrics for r in results)}
    for name, config in baseline_configs(examples, model_config, train_config).items():
        if name in baselines:  # the audio-only start
            continue
        log.info("baseline %s beside %s: %s/baselines/%s", name, model_config.model, out_dir,
                 name)
        baselines[name] = train_seeds(examples, config,
                                      dataclasses.replace(train_config, baselines=()), seeds,
                                      out_dir / "baselines" / name, settings)
    summary = TrainSummary(model_config, train_config, dict(settings or {}), tuple(seeds),
                           tuple(results), mean_std_, versions(), time.perf_counter() - t0,
                           out_dir, baselines)
    if ddp.current().is_main:
        atomic_write_text(out_dir / "summary.json",
                          json.dumps(summary.to_dict(), indent=2, default=str))
    return summary


def evaluate_bundle(bundle_dir: str | Path, examples: Sequence[Example],
                    splits: Sequence[str] = SPLITS, device: str = "auto",
                    batch_size: int = 64) -> dict[str, dict[str, float]]:
    """Re-score a saved bundle on the named splits of ``examples``.

    A bundle trained with ``audio_norm="speaker"`` standardises each speaker of ``examples``
    with statistics from that speaker's own audio in ``examples`` (unlabelled use of the scored
    data); :func:`evaluate_bundle_with_notes` also returns the note that says so."""
    return evaluate_bundle_with_notes(bundle_dir, examples, splits, device, batch_size)[0]


def evaluate_bundle_with_notes(bundle_dir: str | Path, examples: Sequence[Example],
                               splits: Sequence[str] = SPLITS, device: str = "auto",
                               batch_size: int = 64
                               ) -> tuple[dict[str, dict[str, float]], str]:
    """:func:`evaluate_bundle` plus the note on how the audio was standardised ("" = with the
    bundle's training statistics)."""
    dev = pick_device(device)
    bundle = load_bundle(bundle_dir, dev)
    if bundle.config.audio_dim != audio_dim_of(examples, bundle.config.audio_dim):
        raise ModelError(f"the bundle expects {bundle.config.audio_dim} audio columns, the data "
                         f"has {audio_dim_of(examples, 0)}", bundle_dir)
    _check_audio(examples, bundle.config)
    norm = standardise_audio(examples, bundle.config.audio_norm, bundle.config.audio_dim,
                             bundle.audio_stats, bundle.frame_stats)
    if norm.note:
        log.info("%s", norm.note)
    parts = by_split(norm.examples)
    out = {}
    for s in splits:
        if s not in parts:
            raise ConfigError(f"unknown split {s!r} (train, dev, test)")
        if parts[s]:
            out[s] = score(bundle.model, parts[s], bundle.tokenizer, norm.word_stats,
                           batch_size, dev, frame_stats=norm.frame_stats)
    return out, norm.note


__all__ = ["Example", "TrainConfig", "TrainSummary", "SeedResult", "evaluate_bundle",
           "load_cache_examples", "load_text_examples", "train_one", "train_seeds", "score",
           "predict_examples", "standardise_audio"]
