"""One-command pipelines: a TOML recipe -> align -> extract -> train -> evaluate -> report.

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

Every key is checked against the dataclasses below: an unknown key is a :class:`ConfigError`
naming it. ``--set key=value`` overrides use dotted keys (``train.epochs=1``,
``data=/path``); values parse as TOML (``seeds=[0,1]``, ``cls_audio="zero"``) or, failing
that, as plain strings. Relative paths in a recipe are relative to the recipe's folder; in an
override, to the working directory. The effective configuration is written beside the
results (``OUT/pipeline.toml``), so a run can be repeated exactly.

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
import dataclasses
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cmbert_pipe.batch import Executor, open_executor
from cmbert_pipe.cache import FeatureCache, atomic_write_text, canonical_json
from cmbert_pipe.config import PipelineConfig, to_toml
from cmbert_pipe.errors import CmbertError, ConfigError
from cmbert_pipe.schema import SPLITS, BatchSummary, ItemFailure, Utterance

log = logging.getLogger(__name__)


# -- running ----------------------------------------------------------------------------------
class Reporter:
    """How a pipeline tells its caller what it is doing; the CLI draws it, tests record it."""

    def stage(self, name: str, message: str) -> None:
        log.info("[%s] %s", name, message)

    def progress(self, name: str,
                 total: int) -> AbstractContextManager[Callable[[int, int, int], None]]:
        import contextlib

        @contextlib.contextmanager
        def noop() -> Iterator[Callable[[int, int, int], None]]:
            yield lambda done, failed, total: None

        return noop()


@dataclass
class StageResult:
    name: str
    status: str  # "ran" | "current" (skipped) | "failed"
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineResult:
    out_dir: Path
    config: PipelineConfig
    stages: list[StageResult]
    failures: list[ItemFailure]
    metrics: dict[str, Any]  # split -> metric -> {mean, std, n}
    report_md: Path
    report_json: Path
    prediction: Any = None  # Prediction of the example clip, if any
    attention_png: Path | None = None
    model_dir: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failures


def _fingerprint(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:16]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def load_corpus(config: PipelineConfig) -> tuple[tuple[Utterance, ...], list[ItemFailure]]:
    """The dataset adapter's utterances (splits assigned where missing, limit applied)."""
    from cmbert_pipe.datasets import assign_splits, load_dataset

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
        return _run_pipeline(config, out_dir, reporter, force, executor)


def _run_pipeline(config: PipelineConfig, out_dir: str | Path, reporter: Reporter | None,
                  force: bool, executor: Executor | None) -> PipelineResult:
    from cmbert_pipe.align import align_corpus, get_aligner
    from cmbert_pipe.extract import extract_corpus
    from cmbert_pipe.train import load_cache_examples, train_seeds

    reporter = reporter or Reporter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "pipeline.toml", to_toml(config))
    stages_path = out_dir / "stages.json"
    stage_state = {} if force else _read_json(stages_path)
    stages: list[StageResult] = []
    failures: list[ItemFailure] = []

    # corpus
    t0 = time.perf_counter()
    utterances, scan_failures = load_corpus(config)
    failures += scan_failures
    splits = {s: sum(u.split == s for u in utterances) for s in SPLITS}
    reporter.stage("corpus", f"{len(utterances)} utterance(s) from {config.dataset.kind} "
                   f"{config.data} (train {splits['train']}, dev {splits['dev']}, "
                   f"test {splits['test']}); {len(scan_failures)} unusable")
    stages.append(StageResult("corpus", "ran", time.perf_counter() - t0,
                              {"total": len(utterances) + len(scan_failures),
                               "usable": len(utterances), "failed": len(scan_failures),
                               "splits": splits}))

    # align
    t0 = time.perf_counter()
    aligner = get_aligner(config.align.aligner, **config.align.options)
    align_dir = out_dir / "align"
    reporter.stage("align", f"{config.align.aligner} -> {align_dir}")
    with reporter.progress("align", len(utterances)) as on_progress:
        summary = align_corpus(utterances, align_dir, aligner, jobs=config.align.jobs,
                               force=force, on_progress=on_progress, executor=executor)
    failures += list(summary.failures)
    stages.append(_stage_result("align", summary, time.perf_counter() - t0))
    reporter.stage("align", _summary_line(summary))
    aligned_failed = {f.item_id for f in summary.failures}
    aligned = [u for u in utterances if u.id not in aligned_failed]

    # extract
    t0 = time.perf_counter()
    cache_dir = out_dir / "cache"
    reporter.stage("extract", f"{config.features.feature_set} features -> {cache_dir}")
    with reporter.progress("extract", len(aligned)) as on_progress:
        summary = extract_corpus(aligned, align_dir, cache_dir,
                                 feature_set=config.features.feature_set,
                                 jobs=config.features.jobs, force=force,
                                 keep_frames=config.features.keep_frames,
                                 on_progress=on_progress, executor=executor)
    failures += list(summary.failures)
    stages.append(_stage_result("extract", summary, time.perf_counter() - t0))
    reporter.stage("extract", _summary_line(summary))

    # train
    t0 = time.perf_counter()
    examples, settings = load_cache_examples(cache_dir)
    settings = dict(settings, aligner={"name": config.align.aligner,
                                       "options": dict(config.align.options),
                                       "settings": aligner.settings()},
                    feature_set=config.features.feature_set, pipeline=config.name)
    dims = {int(ex.word_features.shape[1]) for ex in examples if ex.word_features is not None}
    model_config = config.model.replace(audio_dim=dims.pop()) if dims else config.model
    train_config = config.train
    keys = sorted(rec.key for _u, rec in FeatureCache(cache_dir).read_index())
    train_fp = _fingerprint({"keys": keys, "labels": sorted((ex.id, ex.label, ex.split)
                                                           for ex in examples),
                             "model": model_config.to_dict(),
                             "train": train_config.optimisation(),
                             "aligner": settings["aligner"]})
    model_dir = out_dir / "model"
    if stage_state.get("train") != train_fp and model_dir.exists():
        reporter.stage("train", "inputs or settings changed: the old models are replaced")
        shutil.rmtree(model_dir)
    seeds = list(train_config.seeds)
    counts = {s: sum(ex.split == s for ex in examples) for s in SPLITS}
    reporter.stage("train", f"{model_config.model} ({model_config.audio_dim} audio columns, "
                   f"cls_audio={model_config.cls_audio}, scaling={model_config.scaling}), "
                   f"{train_config.epochs} epoch(s), seeds {seeds}, "
                   f"train/dev/test {counts['train']}/{counts['dev']}/{counts['test']}")
    stage_state["train"] = train_fp
    atomic_write_text(stages_path, json.dumps(stage_state, indent=2))
    already = [s for s in seeds if (model_dir / f"seed-{s}" / "metrics.json").is_file()
               and _read_json(model_dir / f"seed-{s}" / "metrics.json").get("final")]

    def on_epoch(seed: int, epoch: int, m: dict[str, float]) -> None:
        reporter.stage("train", f"seed {seed} epoch {epoch + 1}/{train_config.epochs}: "
                       f"train loss {m['train_loss']:.3f}, dev loss {m['dev_loss']:.3f}"
                       f"{' (best so far)' if m.get('improved') else ''}, {m['epoch_s']:.1f} s")

    summary_train = train_seeds(examples, model_config, train_config, seeds, model_dir,
                                settings=settings, on_epoch=on_epoch)
    stages.append(StageResult("train", "current" if len(already) == len(seeds) else "ran",
                              time.perf_counter() - t0,
                              {"seeds": seeds, "resumed_seeds": already,
                               "model_dir": str(model_dir)}))
    metrics = summary_train["mean_std"]
    best_dir = model_dir / f"seed-{seeds[0]}"

    # evaluate: the metrics of every seed on every split, and one clip explained
    t0 = time.perf_counter()
    prediction, png = None, None
    clip = _pick_clip(utterances, config.predict.clip, aligned_failed)
    if clip is not None:
        from cmbert_pipe.predict import Predictor

        reporter.stage("predict", f"scoring {clip.id} ({clip.audio.name}) with {best_dir}")
        predictor = Predictor.from_pretrained(best_dir)
        try:
            prediction, maps = predictor.analyse(clip.audio, clip.transcript,
                                                 utterance_id=clip.id, label=clip.label)
        except CmbertError as e:  # the example clip is one item: report it, keep the report
            failures.append(ItemFailure(clip.id, e.path, "predict", e.reason, type(e).__name__))
            prediction, maps = None, None
        pred_dir = out_dir / "predict"
        pred_dir.mkdir(exist_ok=True)
        if prediction is not None:
            atomic_write_text(pred_dir / f"{_safe(clip.id)}.json",
                              json.dumps(prediction.to_dict(), indent=2))
        if prediction is not None and config.predict.attention_png \
                and maps.multimodal is not None:
            from cmbert_pipe.plots import attention_png

            png = attention_png(maps, pred_dir / f"{_safe(clip.id)}_attention.png",
                                title=f"{clip.transcript}  ->  {prediction.score:+.2f} "
                                      f"({prediction.class7_name})")
    stages.append(StageResult("evaluate", "ran", time.perf_counter() - t0,
                              {"clip": clip.id if clip else None,
                               "attention_png": str(png) if png else None}))
    report_md, report_json = write_report(out_dir, config, stages, failures, summary_train,
                                          prediction, png, model_config)
    reporter.stage("report", f"{report_md}")
    return PipelineResult(out_dir, config, stages, failures, metrics, report_md, report_json,
                          prediction, png, best_dir)


def _safe(uid: str) -> str:
    return uid.replace("/", "__")


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


def _stage_result(name: str, summary: BatchSummary, seconds: float) -> StageResult:
    status = "current" if summary.skipped == summary.total and summary.total else \
        "failed" if summary.total and len(summary.failures) == summary.total else "ran"
    return StageResult(name, status, seconds, summary.to_dict())


def _summary_line(summary: BatchSummary) -> str:
    return (f"{summary.total} item(s): {summary.done} done, {summary.skipped} already current, "
            f"{len(summary.failures)} failed")


REPORT_METRICS = ("acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "bacc2_non0", "acc7", "mae",
                  "corr")


def _fmt(m: dict[str, float] | None, pct: bool) -> str:
    if not m or m.get("n", 0) == 0 or m["mean"] != m["mean"]:
        return "–"
    scale = 100.0 if pct else 1.0
    s = f"{m['mean'] * scale:.1f}" if pct else f"{m['mean']:.3f}"
    if m.get("n", 0) > 1:
        s += f" ± {m['std'] * scale:.1f}" if pct else f" ± {m['std']:.3f}"
    return s


def write_report(out_dir: Path, config: PipelineConfig, stages: list[StageResult],
                 failures: list[ItemFailure], train_summary: dict[str, Any], prediction,
                 png: Path | None, model_config) -> tuple[Path, Path]:
    """``report.md`` (metrics table, stages, failures, artefacts) and ``report.json``."""
    metrics = train_summary.get("mean_std", {})
    seeds = train_summary.get("seeds", [])
    lines = [f"# {config.name}: pipeline report", ""]
    lines += [(f"Corpus `{config.data}` ({config.dataset.kind}); aligner "
               f"`{config.align.aligner}`; features `{config.features.feature_set}`; model "
               f"`{model_config.model}` (cls_audio=`{model_config.cls_audio}`, scaling="
               f"`{model_config.scaling}`); {len(seeds)} seed(s) {seeds}; "
               f"{train_summary.get('train_config', {}).get('epochs')} epoch(s)."), ""]
    lines += ["## Metrics (mean ± std over seeds; accuracies and F1 in %)", ""]
    header = "| split | n | " + " | ".join(REPORT_METRICS) + " |"
    lines += [header, "|" + "---|" * (len(REPORT_METRICS) + 2)]
    for split in SPLITS:
        if split not in metrics:
            continue
        m = metrics[split]
        n = next((r["metrics"][split].get("n") for r in train_summary["per_seed"].values()
                  if split in r["metrics"]), "")
        cells = [_fmt(m.get(k), pct=k not in ("mae", "corr")) for k in REPORT_METRICS]
        lines.append(f"| {split} | {n} | " + " | ".join(cells) + " |")
    lines += ["", "## Stages", "",
              "| stage | status | seconds | items | done | current | failed |",
              "|---|---|---|---|---|---|---|"]
    for st in stages:
        s = st.summary
        lines.append(f"| {st.name} | {st.status} | {st.seconds:.1f} | {s.get('total', '')} | "
                     f"{s.get('done', '')} | {s.get('skipped', '')} | {s.get('failed', '')} |")
    if failures:
        lines += ["", f"## Failures ({len(failures)})", "", "| item | stage | file | reason |",
                  "|---|---|---|---|"]
        lines += [f"| {f.item_id} | {f.stage} | {f.path or ''} | {f.reason} |" for f in failures]
    lines += ["", "## Artefacts", "",
              f"- effective recipe: `{out_dir / 'pipeline.toml'}`",
              f"- alignments (TextGrid): `{out_dir / 'align'}`",
              f"- feature cache: `{out_dir / 'cache'}`",
              (f"- model bundles: `{out_dir / 'model'}/seed-N` (summary: "
               f"`{out_dir / 'model' / 'summary.json'}`)")]
    if prediction is not None:
        lines += [(f"- example prediction: `{out_dir / 'predict'}` — "
                   f"{prediction.utterance_id} \"{prediction.transcript}\": score "
                   f"{prediction.score:+.2f} ({prediction.class7_name}, label {prediction.label})")]
    if png is not None:
        lines += [f"- attention picture: `{png}`"]
    md = out_dir / "report.md"
    atomic_write_text(md, "\n".join(lines) + "\n")
    js = out_dir / "report.json"
    atomic_write_text(js, json.dumps({
        "config": config.to_dict(),
        "metrics": metrics,
        "per_seed": train_summary.get("per_seed", {}),
        "stages": [dataclasses.asdict(s) for s in stages],
        "failures": [f.to_dict() for f in failures],
        "prediction": prediction.to_dict() if prediction is not None else None,
        "attention_png": str(png) if png else None,
        "artefacts": {"recipe": str(out_dir / "pipeline.toml"), "align": str(out_dir / "align"),
                      "cache": str(out_dir / "cache"), "model": str(out_dir / "model")},
    }, indent=2, default=str))
    return md, js


def repo_pipelines_dir() -> Path:
    """``pipelines/`` of the source checkout this package runs from."""
    return Path(__file__).resolve().parents[1] / "pipelines"


def demo_recipe() -> Path:
    path = repo_pipelines_dir() / "demo.toml"
    if not path.is_file():
        raise ConfigError("the demo recipe is not here: run from a source checkout "
                          "(git clone; pip install -e .)", path)
    return path
