"""The pipeline's report: ``report.md`` for people and ``report.json`` for programs.

    report.md    the run in one sentence, the metrics table (mean ± std over seeds per split),
                 one row per stage (status, seconds, items done / current / failed), every
                 failure with its file and reason, and where the artefacts are
    report.json  the same, plus the effective configuration and the metrics of every seed
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cmbert_pipe.config import ModelConfig, PipelineConfig
from cmbert_pipe.io import atomic_write_text
from cmbert_pipe.metrics import REPORT_METRICS, format_mean_std
from cmbert_pipe.schema import SPLITS, ItemFailure, Prediction


@dataclass
class StageResult:
    """What one stage of a pipeline did."""

    name: str  # corpus | align | extract | train | evaluate
    status: str  # "ran" | "current" (nothing to redo) | "failed"
    seconds: float  # wall time
    summary: dict[str, Any] = field(default_factory=dict)  # BatchSummary.to_dict() or the like


def report_markdown(out_dir: Path, config: PipelineConfig, model_config: ModelConfig,
                    stages: list[StageResult], failures: list[ItemFailure],
                    train_summary: dict[str, Any], prediction: Prediction | None,
                    png: Path | None) -> str:
    """The text of ``report.md``."""
    metrics = train_summary.get("mean_std", {})
    seeds = train_summary.get("seeds", [])
    lines = [f"# {config.name}: pipeline report", ""]
    lines += [(f"Corpus `{config.data}` ({config.dataset.kind}); aligner "
               f"`{config.align.aligner}`; features `{config.features.feature_set}`; model "
               f"`{model_config.model}` (cls_audio=`{model_config.cls_audio}`, scaling="
               f"`{model_config.scaling}`); {len(seeds)} seed(s) {seeds}; "
               f"{train_summary.get('train_config', {}).get('epochs')} epoch(s)."), ""]
    lines += ["## Metrics (mean ± std over seeds; accuracies and F1 in %)", ""]
    lines += ["| split | n | " + " | ".join(REPORT_METRICS) + " |",
              "|" + "---|" * (len(REPORT_METRICS) + 2)]
    for split in SPLITS:
        if split not in metrics:
            continue
        n = next((r["metrics"][split].get("n") for r in train_summary["per_seed"].values()
                  if split in r["metrics"]), "")
        cells = [format_mean_std(k, metrics[split].get(k)) for k in REPORT_METRICS]
        lines.append(f"| {split} | {n} | " + " | ".join(cells) + " |")
    baselines = train_summary.get("baselines") or {}
    if baselines:
        split = "test" if "test" in metrics else next(iter(metrics), "test")
        lines += ["", f"## Beside its baselines ({split} split, same seeds)", "",
                  "What the audio alone (`audio`: the model's acoustic head, no BERT) and the text "
                  "alone (`tbert`) reach on the same splits: the model should beat both.", "",
                  "| model | " + " | ".join(REPORT_METRICS) + " |",
                  "|" + "---|" * (len(REPORT_METRICS) + 1)]
        rows = {model_config.model: metrics}
        rows.update({f"{name} baseline": b.get("mean_std", {}) for name, b in baselines.items()})
        for name, ms in rows.items():
            cells = [format_mean_std(k, ms.get(split, {}).get(k)) for k in REPORT_METRICS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
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
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, config: PipelineConfig, model_config: ModelConfig,
                 stages: list[StageResult], failures: list[ItemFailure],
                 train_summary: dict[str, Any], prediction: Prediction | None,
                 png: Path | None) -> tuple[Path, Path]:
    """Write ``OUT/report.md`` and ``OUT/report.json``; returns their paths."""
    md = out_dir / "report.md"
    atomic_write_text(md, report_markdown(out_dir, config, model_config, stages, failures,
                                          train_summary, prediction, png))
    js = out_dir / "report.json"
    atomic_write_text(js, json.dumps({
        "config": config.to_dict(),
        "metrics": train_summary.get("mean_std", {}),
        "per_seed": train_summary.get("per_seed", {}),
        "baselines": {name: b.get("mean_std", {})
                      for name, b in (train_summary.get("baselines") or {}).items()},
        "stages": [dataclasses.asdict(s) for s in stages],
        "failures": [f.to_dict() for f in failures],
        "prediction": prediction.to_dict() if prediction is not None else None,
        "attention_png": str(png) if png else None,
        "artefacts": {"recipe": str(out_dir / "pipeline.toml"), "align": str(out_dir / "align"),
                      "cache": str(out_dir / "cache"), "model": str(out_dir / "model")},
    }, indent=2, default=str))
    return md, js
