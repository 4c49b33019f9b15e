"""One-command pipelines: a TOML recipe -> align -> extract -> train -> evaluate -> report.

    >>> from cmbert_pipe.config import load_recipe
    >>> config = load_recipe("pipelines/ravdess.toml", overrides=["train.epochs=1"])
    >>> result = run_pipeline(config, "runs/ravdess")
    >>> result.report_md, result.metrics["test"]["acc2_non0"]["mean"]

A recipe (see ``pipelines/*.toml``)::

    name = "ravdess"                 # the run's name (default output folder runs/<name>)
    data = "/data/ravdess"           # corpus: folder, manifest CSV or release root
    [dataset]  kind = "ravdess"      # folder | manifest | ravdess | mosi, + adapter options
    [align]    aligner = "pocketsphinx"
    [features] feature_set = "covarep74"
    [model]    model = "cmbert"      # any ModelConfig field (cls_audio, scaling, bert, ...)
    [train]    epochs = 3            # any TrainConfig field, plus seeds = [0, 1, 2, 3, 4]
    [predict]  clip = "<utterance id>"   # scored after training, with its attention picture

The recipe is read by :func:`cmbert_pipe.config.load_recipe` (every key checked, ``--set``
overrides applied; docs/configuration.md). The effective configuration is written beside the
results (``OUT/pipeline.toml``), so a run can be repeated exactly. This module runs the stages,
one short function each; :mod:`cmbert_pipe.report` writes the report.

Output folder::

    OUT/pipeline.toml      the effective recipe          OUT/report.md, report.json
    OUT/align/<id>.TextGrid                              OUT/cache/   feature cache
    OUT/model/seed-N/      model bundles                 OUT/model/summary.json
    OUT/predict/<id>.json, <id>_attention.png            OUT/stages.json  stage fingerprints

Stages skip what is current: the aligner and the extractor skip every item whose output exists
for the same inputs (content keys), training skips finished seeds and retrains only when its
inputs (the cache's keys, the model and training settings) change; a killed run, restarted,
resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cmbert_pipe.align import Aligner, align_corpus, get_aligner
from cmbert_pipe.batch import Executor, open_executor
from cmbert_pipe.cache import FeatureCache
from cmbert_pipe.config import ModelConfig, PipelineConfig, to_toml
from cmbert_pipe.datasets import assign_splits, load_dataset
from cmbert_pipe.errors import CmbertError, ConfigError
from cmbert_pipe.extract import extract_corpus
from cmbert_pipe.io import atomic_write_text, read_json, short_key
from cmbert_pipe.report import StageResult, write_report
from cmbert_pipe.schema import SPLITS, BatchSummary, ItemFailure, Prediction, Utterance

log = logging.getLogger(__name__)


class Reporter:
    """How a pipeline tells its caller what it is doing; the CLI draws it, tests record it."""

    def stage(self, name: str, message: str) -> None:
        log.info("[%s] %s", name, message)

    def progress(self, name: str,
                 total: int) -> AbstractContextManager[Callable[[int, int, int], None]]:
        @contextlib.contextmanager
        def noop() -> Iterator[Callable[[int, int, int], None]]:
            yield lambda done, failed, total: None

        return noop()


@dataclass
class PipelineResult:
    out_dir: Path
    config: PipelineConfig
    stages: list[StageResult]
    failures: list[ItemFailure]
    metrics: dict[str, Any]  # split -> metric -> {mean, std, n}
    report_md: Path
    report_json: Path
    prediction: Prediction | None = None  # the example clip's, if any
    attention_png: Path | None = None
    model_dir: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass
class _Run:
    """What the stages of one run share: where they write, and what they have recorded."""

    config: PipelineConfig
    out_dir: Path
    reporter: Reporter
    force: bool
    executor: Executor | None
    stage_state: dict[str, Any] = field(default_factory=dict)  # OUT/stages.json
    stages: list[StageResult] = field(default_factory=list)
    failures: list[ItemFailure] = field(default_factory=list)

    def timed(self, name: str, t0: float, status: str, summary: dict[str, Any]) -> None:
        self.stages.append(StageResult(name, status, time.perf_counter() - t0, summary))


@dataclass(frozen=True)
class _Trained:
    """The train stage's outcome."""

    model_config: ModelConfig  # with the cache's audio_dim
    summary: dict[str, Any]  # train_seeds' summary (mean_std, per_seed, seeds, ...)
    best_dir: Path  # the first seed's bundle: the one the example clip is scored with


def load_corpus(config: PipelineConfig) -> tuple[tuple[Utterance, ...], list[ItemFailure]]:
    """The dataset adapter's utterances (splits assigned where missing, limit applied)."""
    if not config.data:
        raise ConfigError("no corpus: set data = \"PATH\" in the recipe or --set data=PATH")
    scan = load_dataset(config.dataset.kind, config.data, config.dataset.options)
    utterances = assign_splits(scan.utterances, config.dataset.dev_fraction,
                               config.dataset.test_fraction)
    if config.dataset.limit:
        utterances = utterances[: config.dataset.limit]
    if not utterances:
        raise ConfigError("the corpus has no usable utterance", config.data)
    return utterances, list(scan.failures)


def run_pipeline(config: PipelineConfig, out_dir: str | Path, *,
                 reporter: Reporter | None = None, force: bool = False,
                 cluster: str | None = None) -> PipelineResult:
    """Run every stage of ``config`` into ``out_dir`` (see the module docstring).

    ``cluster`` (``local:N`` or a Dask scheduler address) runs the align and extract items on
    Dask instead of the stages' ``jobs`` local processes; it is connected to before anything
    is written, so an unreachable scheduler fails first."""
    with contextlib.ExitStack() as stack:
        executor = stack.enter_context(open_executor(cluster=cluster)) if cluster else None
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "pipeline.toml", to_toml(config))
        run = _Run(config, out_dir, reporter or Reporter(), force, executor,
                   {} if force else read_json(out_dir / "stages.json") or {})
        utterances = _corpus_stage(run)
        aligner, aligned = _align_stage(run, utterances)
        _extract_stage(run, aligned)
        trained = _train_stage(run, aligner)
        failed = {u.id for u in utterances} - {u.id for u in aligned}
        prediction, png = _evaluate_stage(run, utterances, failed, trained.best_dir)
        report_md, report_json = write_report(out_dir, config, trained.model_config,
                                              run.stages, run.failures, trained.summary,
                                              prediction, png)
        run.reporter.stage("report", f"{report_md}")
        return PipelineResult(out_dir, config, run.stages, run.failures,
                              trained.summary["mean_std"], report_md, report_json, prediction,
                              png, trained.best_dir)


def _corpus_stage(run: _Run) -> tuple[Utterance, ...]:
    t0 = time.perf_counter()
    utterances, scan_failures = load_corpus(run.config)
    run.failures += scan_failures
    splits = {s: sum(u.split == s for u in utterances) for s in SPLITS}
    run.reporter.stage("corpus", f"{len(utterances)} utterance(s) from "
                       f"{run.config.dataset.kind} {run.config.data} (train {splits['train']}, "
                       f"dev {splits['dev']}, test {splits['test']}); "
                       f"{len(scan_failures)} unusable")
    run.timed("corpus", t0, "ran", {"total": len(utterances) + len(scan_failures),
                                    "usable": len(utterances), "failed": len(scan_failures),
                                    "splits": splits})
    return utterances


def _align_stage(run: _Run, utterances: tuple[Utterance, ...]
                 ) -> tuple[Aligner, list[Utterance]]:
    """TextGrids into OUT/align; returns the aligner and the utterances it aligned."""
    t0 = time.perf_counter()
    config = run.config.align
    aligner = get_aligner(config.aligner, **config.options)
    align_dir = run.out_dir / "align"
    run.reporter.stage("align", f"{config.aligner} -> {align_dir}")
    with run.reporter.progress("align", len(utterances)) as on_progress:
        summary = align_corpus(utterances, align_dir, aligner, jobs=config.jobs,
                               force=run.force, on_progress=on_progress, executor=run.executor)
    _batch_done(run, "align", summary, t0)
    failed = {f.item_id for f in summary.failures}
    return aligner, [u for u in utterances if u.id not in failed]


def _extract_stage(run: _Run, aligned: list[Utterance]) -> None:
    """Word-level features of the aligned utterances into the cache OUT/cache."""
    t0 = time.perf_counter()
    config = run.config.features
    cache_dir = run.out_dir / "cache"
    run.reporter.stage("extract", f"{config.feature_set} features -> {cache_dir}")
    with run.reporter.progress("extract", len(aligned)) as on_progress:
        summary = extract_corpus(aligned, run.out_dir / "align", cache_dir,
                                 feature_set=config.feature_set, jobs=config.jobs,
                                 force=run.force, keep_frames=config.keep_frames,
                                 on_progress=on_progress, executor=run.executor)
    _batch_done(run, "extract", summary, t0)


def _batch_done(run: _Run, name: str, summary: BatchSummary, t0: float) -> None:
    run.failures += list(summary.failures)
    status = "current" if summary.skipped == summary.total and summary.total else \
        "failed" if summary.total and len(summary.failures) == summary.total else "ran"
    run.timed(name, t0, status, summary.to_dict())
    run.reporter.stage(name, f"{summary.total} item(s): {summary.done} done, {summary.skipped} "
                       f"already current, {len(summary.failures)} failed")


def _train_stage(run: _Run, aligner: Aligner) -> _Trained:
    """One model per seed into OUT/model/seed-N: finished seeds are kept while the inputs and
    settings are those they were trained with (the stage fingerprint); else all retrain."""
    from cmbert_pipe.train import load_cache_examples, train_seeds  # torch: loaded only here

    t0 = time.perf_counter()
    config, cache_dir, model_dir = run.config, run.out_dir / "cache", run.out_dir / "model"
    examples, settings = load_cache_examples(cache_dir, frames=config.model.frames)
    settings = dict(settings, aligner={"name": config.align.aligner,
                                       "options": dict(config.align.options),
                                       "settings": aligner.settings()},
                    feature_set=config.features.feature_set, pipeline=config.name)
    dims = {int(ex.word_features.shape[1]) for ex in examples if ex.word_features is not None}
    model_config = config.model.replace(audio_dim=dims.pop()) if dims else config.model
    train_config, seeds = config.train, list(config.train.seeds)
    fingerprint = short_key({
        "keys": sorted(rec.key for _u, rec in FeatureCache(cache_dir).read_index()),
        "labels": sorted((ex.id, ex.label, ex.split) for ex in examples),
        "model": model_config.to_dict(), "train": train_config.optimisation(),
        "aligner": settings["aligner"]})
    if run.stage_state.get("train") != fingerprint and model_dir.exists():
        run.reporter.stage("train", "inputs or settings changed: the old models are replaced")
        shutil.rmtree(model_dir)
    counts = {s: sum(ex.split == s for ex in examples) for s in SPLITS}
    run.reporter.stage("train", f"{model_config.model} ({model_config.audio_dim} audio columns, "
                       f"cls_audio={model_config.cls_audio}, scaling={model_config.scaling}), "
                       f"{train_config.epochs} epoch(s), seeds {seeds}, train/dev/test "
                       f"{counts['train']}/{counts['dev']}/{counts['test']}")
    run.stage_state["train"] = fingerprint
    atomic_write_text(run.out_dir / "stages.json", json.dumps(run.stage_state, indent=2))
    already = [s for s in seeds
               if (read_json(model_dir / f"seed-{s}" / "metrics.json") or {}).get("final")]

    def on_epoch(seed: int, epoch: int, m: dict[str, float]) -> None:
        run.reporter.stage("train", f"seed {seed} epoch {epoch + 1}/{train_config.epochs}: "
                           f"train loss {m['train_loss']:.3f}, dev loss {m['dev_loss']:.3f}"
                           f"{' (best so far)' if m.get('improved') else ''}, "
                           f"{m['epoch_s']:.1f} s")

    summary = train_seeds(examples, model_config, train_config, seeds, model_dir,
                          settings=settings, on_epoch=on_epoch).to_dict()
    run.timed("train", t0, "current" if len(already) == len(seeds) else "ran",
              {"seeds": seeds, "resumed_seeds": already, "model_dir": str(model_dir)})
    return _Trained(model_config, summary, model_dir / f"seed-{seeds[0]}")


def _evaluate_stage(run: _Run, utterances: tuple[Utterance, ...], failed: set[str],
                    model_dir: Path) -> tuple[Prediction | None, Path | None]:
    """Score one clip with its attention picture into OUT/predict (the metrics of every seed
    on every split come from training)."""
    t0 = time.perf_counter()
    prediction, png = None, None
    clip = _pick_clip(utterances, run.config.predict.clip, failed)
    if clip is not None:
        prediction, png = _explain_clip(run, clip, model_dir)
    run.timed("evaluate", t0, "ran", {"clip": clip.id if clip else None,
                                      "attention_png": str(png) if png else None})
    return prediction, png


def _explain_clip(run: _Run, clip: Utterance,
                  model_dir: Path) -> tuple[Prediction | None, Path | None]:
    from cmbert_pipe.plots import attention_png  # matplotlib: loaded only here
    from cmbert_pipe.predict import Predictor  # torch: loaded only here

    run.reporter.stage("predict", f"scoring {clip.id} ({clip.audio.name}) with {model_dir}")
    predictor = Predictor.from_pretrained(model_dir)
    try:
        prediction, maps = predictor.analyse(clip.audio, clip.transcript, utterance_id=clip.id,
                                             label=clip.label)
    except CmbertError as e:  # the example clip is one item: report it, keep the report
        run.failures.append(ItemFailure(clip.id, e.path, "predict", e.reason, type(e).__name__))
        (run.out_dir / "predict").mkdir(exist_ok=True)
        return None, None
    pred_dir = run.out_dir / "predict"
    pred_dir.mkdir(exist_ok=True)
    safe_id = clip.id.replace("/", "__")
    atomic_write_text(pred_dir / f"{safe_id}.json", json.dumps(prediction.to_dict(), indent=2))
    if not run.config.predict.attention_png or maps.multimodal is None:
        return prediction, None
    png = attention_png(maps, pred_dir / f"{safe_id}_attention.png",
                        title=f"{clip.transcript}  ->  {prediction.score:+.2f} "
                              f"({prediction.class7_name})")
    return prediction, png


def _pick_clip(utterances, clip_id: str, failed: set[str]) -> Utterance | None:
    if clip_id:
        for u in utterances:
            if u.id == clip_id:
                return u
        raise ConfigError(f"predict.clip {clip_id!r} is not an utterance of the corpus")
    for split in ("test", "dev", "train"):
        for u in utterances:
            if u.split == split and u.id not in failed:
                return u
    return None


def repo_pipelines_dir() -> Path:
    """``pipelines/`` of the source checkout this package runs from."""
    return Path(__file__).resolve().parents[1] / "pipelines"


def demo_recipe() -> Path:
    path = repo_pipelines_dir() / "demo.toml"
    if not path.is_file():
        raise ConfigError("the demo recipe is not here: run from a source checkout "
                          "(git clone; pip install -e .)", path)
    return path
