"""``cmbert align``: word and phone timestamps for a corpus (or one clip), as Praat TextGrids.

    cmbert align CORPUS_DIR --out aligned/                       # clip.wav + clip.txt/.lab
    cmbert align wav/ --transcripts lab/ --out aligned/ --jobs 2
    cmbert align manifest.csv --out aligned/                     # id,audio,transcript,...
    cmbert align clip.wav transcript.txt --out aligned/          # one clip
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from cmbert_pipe.align import ALIGNERS, align_corpus, get_aligner
from cmbert_pipe.align.driver import SUMMARY_NAME, method_counts
from cmbert_pipe.align.mfa import MfaAligner
from cmbert_pipe.cli.app import app, console
from cmbert_pipe.cli.common import progress_bar, report_summary, user_errors
from cmbert_pipe.corpus import TRANSCRIPT_EXTENSIONS, discover, single_clip
from cmbert_pipe.errors import ConfigError, TranscriptError
from cmbert_pipe.schema import ItemFailure

AlignerName = Enum("AlignerName", {name: name for name in sorted(ALIGNERS)}, type=str)


@app.command("align")
def align_command(
    corpus: Path = typer.Argument(
        ..., help="Folder of audio + same-stem .txt/.lab transcripts, a manifest CSV, or one clip."
    ),
    transcript: Path | None = typer.Argument(
        None, help="With a single clip as CORPUS: its transcript file."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for the TextGrids."),
    transcripts: Path | None = typer.Option(
        None, "--transcripts",
        help="Folder holding the same-stem transcripts (if not beside the audio).",
    ),
    aligner: AlignerName = typer.Option("pocketsphinx", "--aligner", help="Alignment backend."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Parallel worker processes."),
    force: bool = typer.Option(False, "--force", help="Re-align even what is already current."),
    max_duration_s: float = typer.Option(
        300.0, "--max-duration", min=1.0, help="Refuse recordings longer than this (seconds)."
    ),
) -> None:
    """Force-align transcripts to audio: one TextGrid (words + phones tiers) per utterance."""
    with user_errors():
        prior: list[ItemFailure] = []
        if transcript is not None:
            if corpus.is_dir() or corpus.suffix.lower() == ".csv":
                raise ConfigError("a transcript argument goes with a single audio clip", corpus)
            try:
                utterances = [single_clip(corpus, transcript)]
            except TranscriptError as e:
                utterances = []
                prior.append(ItemFailure(corpus.stem, e.path, "load", e.reason, "TranscriptError"))
        elif corpus.is_file() and corpus.suffix.lower() != ".csv":
            raise ConfigError(
                "a single clip needs its transcript: cmbert align CLIP TRANSCRIPT --out DIR "
                f"(a {'/'.join(TRANSCRIPT_EXTENSIONS)} file)",
                corpus,
            )
        elif not corpus.exists():
            raise ConfigError("corpus not found", corpus)
        else:
            scan = discover(corpus, transcripts)
            utterances, prior = list(scan.utterances), list(scan.failures)
        options = {"max_duration_s": max_duration_s} if aligner.value == "pocketsphinx" else {}
        backend = get_aligner(aligner.value, **options)
        if isinstance(backend, MfaAligner):
            backend.executable()  # missing MFA: one clear message, before any work
        total = len(utterances) + len(prior)
        if total == 0:
            raise ConfigError("no audio files found", corpus)
        with progress_bar("align", total) as progress:
            summary = align_corpus(
                utterances, out, backend, jobs=jobs, force=force, on_progress=progress,
                prior_failures=prior,
            )
        console.print(f"TextGrids: {out}")
        methods = method_counts(out, utterances)
        if methods:
            console.print("aligned by: " + ", ".join(f"{m} {n}" for m, n in methods.items())
                          + "  (method and quality of each: <id>.align.json)")
    console.print(f"summary: {out / SUMMARY_NAME}")
    report_summary(summary)  # the driver wrote summary.json (with the method counts)
