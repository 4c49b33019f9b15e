"""``cmbert align``: word and phone timestamps for a corpus (or one clip), as Praat TextGrids.

    cmbert align CORPUS_DIR --out aligned/                       # clip.wav + clip.txt/.lab
    cmbert align wav/ --transcripts lab/ --out aligned/ --jobs 2
    cmbert align manifest.csv --out aligned/                     # id,audio,transcript,...
    cmbert align clip.wav transcript.txt --out aligned/          # one clip
"""

from __future__ import annotations

from pathlib import Path

import typer

from cmbert_pipe.align import align_corpus, get_aligner
from cmbert_pipe.align.driver import SUMMARY_NAME, method_counts
from cmbert_pipe.align.mfa import MfaAligner
from cmbert_pipe.align.pocketsphinx_backend import PocketsphinxConfig
from cmbert_pipe.batch import open_executor, parse_cluster
from cmbert_pipe.cli.app import app, console
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
    typed_here,
    typed_options,
    user_errors,
)
from cmbert_pipe.config import ALIGNER_NAMES, AlignConfig
from cmbert_pipe.errors import ConfigError

AlignerName = choices("AlignerName", ALIGNER_NAMES)
ALIGN = AlignConfig()  # the defaults the help shows


@app.command("align")
def align_command(
    ctx: typer.Context,
    corpus: Path = CORPUS_ARG,
    transcript: Path | None = TRANSCRIPT_ARG,
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for the TextGrids."),
    transcripts: Path | None = TRANSCRIPTS_OPT,
    aligner: AlignerName = typer.Option(ALIGN.aligner, "--aligner", help="Alignment backend."),
    jobs: int = typer.Option(ALIGN.jobs, "--jobs", "-j", help="Parallel worker processes."),
    cluster: str | None = typer.Option(None, "--cluster", help=CLUSTER_HELP),
    force: bool = typer.Option(False, "--force", help="Re-align even what is already current."),
    max_duration_s: float = typer.Option(
        PocketsphinxConfig.max_duration_s, "--max-duration",
        help="pocketsphinx: refuse recordings longer than this (seconds).",
    ),
) -> None:
    """Force-align transcripts to audio: one TextGrid (words + phones tiers) per utterance."""
    with user_errors():
        computed = {}
        if typed_here(ctx, "max_duration_s") and aligner.value == "pocketsphinx":
            computed["align.options.max_duration_s"] = ("--max-duration", max_duration_s)
        config: AlignConfig = typed_options(ctx, {"aligner": "align.aligner", "jobs": "align.jobs"},
                                            computed=computed, align=AlignConfig)["align"]
        backend = get_aligner(config.aligner, **config.options)
        if cluster:
            parse_cluster(cluster)  # a malformed address: refused before any work
        scan = corpus_or_clip(corpus, transcript, transcripts, "align")
        utterances, prior = list(scan.utterances), list(scan.failures)
        if isinstance(backend, MfaAligner):
            backend.executable()  # missing MFA: one clear message, before any work
        total = len(utterances) + len(prior)
        if total == 0:
            raise ConfigError("no audio files found", corpus)
        with open_executor(config.jobs, cluster) as executor, progress_bar("align", total) as progress:
            summary = align_corpus(
                utterances, out, backend, force=force, on_progress=progress,
                prior_failures=prior, executor=executor,
            )
        console.print(f"TextGrids: {shown(out)}")
        methods = method_counts(out, utterances)
        if methods:
            console.print("aligned by: " + ", ".join(f"{m} {n}" for m, n in methods.items())
                          + "  (method and quality of each: <id>.align.json)")
    console.print(f"summary: {shown(out / SUMMARY_NAME)}")
    report_summary(summary)  # the driver wrote summary.json (with the method counts)
