"""``cmbert extract-audio`` and ``cmbert export-frames``.

    cmbert extract-audio corpus/ --alignments runs/align --out runs/cache
    cmbert extract-audio clip.wav clip.txt --alignments runs/align --out runs/cache --frames
    cmbert extract-audio corpus.csv --alignments runs/align --out runs/cache --features egemaps -j 2
    cmbert export-frames runs/cache --format csv --out runs/frames
"""

from __future__ import annotations

from pathlib import Path

import typer

from cmbert_pipe.audio import MAX_DURATION_S
from cmbert_pipe.batch import open_executor, parse_cluster
from cmbert_pipe.cli.app import app, console, out
from cmbert_pipe.cli.common import (
    CLUSTER_HELP,
    CORPUS_ARG,
    TRANSCRIPT_ARG,
    TRANSCRIPTS_OPT,
    choices,
    corpus_or_clip,
    progress_bar,
    report_summary,
    shown,
    typed_options,
    user_errors,
    with_load_failures,
)
from cmbert_pipe.config import FEATURE_SET_NAMES, FeaturesConfig
from cmbert_pipe.errors import ConfigError
from cmbert_pipe.extract import EXPORT_FORMATS, export_frames, extract_corpus

FeatureSetName = choices("FeatureSetName", FEATURE_SET_NAMES)
ExportFormat = choices("ExportFormat", EXPORT_FORMATS)
FEATURES = FeaturesConfig()  # the defaults the help shows


@app.command("extract-audio", short_help="Acoustic features (COVAREP-74 or openSMILE) per aligned word, into a content-addressed cache.")
def extract_audio(
    ctx: typer.Context,
    corpus: Path = CORPUS_ARG,
    transcript: Path | None = TRANSCRIPT_ARG,
    alignments: Path = typer.Option(
        ..., "--alignments", "-a", help="Folder of TextGrids from `cmbert align` (<id>.TextGrid)."
    ),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Cache folder to create or update."),
    transcripts: Path | None = TRANSCRIPTS_OPT,
    features: FeatureSetName = typer.Option(
        FEATURES.feature_set, "--features", "-f",
        help="covarep74: COVAREP-equivalent 74 columns; egemaps / compare: openSMILE LLDs.",
    ),
    frames: bool = typer.Option(
        FEATURES.keep_frames, "--frames", help="Also keep the frame-level (T, D) matrices in the cache."
    ),
    export: ExportFormat | None = typer.Option(
        None, "--export",
        help="After extracting, write the frames as csv or npz to OUT/frames-<fmt>/ "
             "(implies --frames).",
    ),
    jobs: int = typer.Option(FEATURES.jobs, "--jobs", "-j", help="Worker processes."),
    cluster: str | None = typer.Option(None, "--cluster", help=CLUSTER_HELP),
    force: bool = typer.Option(False, "--force", help="Recompute entries that are current."),
    min_align_quality: float | None = typer.Option(
        None, "--min-align-quality",
        help="Leave out utterances whose alignment quality (0-1, docs/alignment.md) is below this."),
    max_duration_s: float = typer.Option(
        MAX_DURATION_S, "--max-duration", min=1.0,
        help="Refuse recordings longer than this (seconds), as align does."),
) -> None:
    """Frame features for every aligned utterance, averaged per word, into a content-addressed
    cache. Resumes where a killed run stopped; exits 1 if any item failed (all are listed)."""
    export = ExportFormat(export).value if export is not None else None
    with user_errors():
        computed = {"features.keep_frames": ("--export", True)} if export is not None else {}
        config: FeaturesConfig = typed_options(
            ctx, {"features": "features.feature_set", "jobs": "features.jobs",
                  "frames": "features.keep_frames"}, computed=computed,
            features=FeaturesConfig)["features"]
        if cluster:
            parse_cluster(cluster)  # a malformed address: refused before any work
        scan = corpus_or_clip(corpus, transcript, transcripts, "extract-audio")
        if not alignments.is_dir():
            raise ConfigError("alignments folder not found; run `cmbert align` first", alignments)
        scan = _filter_by_align_quality(scan, alignments, min_align_quality)
        with open_executor(config.jobs, cluster) as executor, \
                progress_bar(f"extract {config.feature_set}", len(scan.utterances)) as bar:
            summary = extract_corpus(
                scan.utterances, alignments, out_dir, feature_set=config.feature_set, force=force,
                keep_frames=config.keep_frames, on_progress=bar, executor=executor,
                max_duration_s=max_duration_s,
            )
        summary = with_load_failures(summary, scan.failures)
        if export is not None:
            written = export_frames(out_dir, out_dir / f"frames-{export}", export)
            console.print(f"exported {len(written)} frame file(s) to {shown(out_dir / f'frames-{export}')}")
    out.print(f"cache: {shown(out_dir)}")
    report_summary(summary, out_dir / "extract_summary.json")


def _filter_by_align_quality(scan, alignments: Path, min_quality: float | None):
    """The scan without the utterances whose alignment quality is below ``min_quality``;
    prints how many alignments each method made and how many were left out."""
    from dataclasses import replace

    from cmbert_pipe.align.driver import alignment_quality
    from cmbert_pipe.align.quality import describe_methods, passes

    kept, methods = [], []
    for utt in scan.utterances:
        method, quality = alignment_quality(alignments, utt)
        if passes(quality, min_quality):
            kept.append(utt)
            methods.append(method)
    left_out = len(scan.utterances) - len(kept)
    out.print(f"alignments: {describe_methods(methods) or 'none'}"
              + (f"; {left_out} left out (quality below {min_quality})"
                 if min_quality is not None else ""))
    return replace(scan, utterances=tuple(kept)) if left_out else scan


@app.command("export-frames", short_help="Write cached frame matrices as CSV or NPZ, columns in COVAREP order.")
def export_frames_cmd(
    cache: Path = typer.Argument(..., help="A cache made with `extract-audio --frames`."),
    fmt: ExportFormat = typer.Option("csv", "--format", help="csv (header = column names) or npz."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for <id>.csv / <id>.npz."),
) -> None:
    """Write the cached frame matrices, one file per utterance, columns in the feature set's
    order (COVAREP's for covarep74), frame k centred at 5 ms + 10 ms·k."""
    with user_errors():
        written = export_frames(cache, out_dir, ExportFormat(fmt).value)
    out.print(f"wrote {len(written)} file(s) to {shown(out_dir)}")
