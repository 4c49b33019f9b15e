"""``cmbert predict``: score one clip (table, --json, --attention-png) or a whole corpus."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from cmbert_pipe.audio import MAX_DURATION_S
from cmbert_pipe.batch import open_executor, parse_cluster
from cmbert_pipe.cli.app import app, console, out
from cmbert_pipe.cli.common import (
    CLUSTER_HELP,
    choices,
    doing,
    is_corpus,
    progress_bar,
    report_summary,
    shown,
    user_errors,
    with_load_failures,
)
from cmbert_pipe.config import ALIGNER_NAMES, DEFAULT_JOBS, MAX_JOBS
from cmbert_pipe.corpus import discover
from cmbert_pipe.errors import ConfigError
from cmbert_pipe.outputs import ensure_writable_file
from cmbert_pipe.schema import Prediction

AlignerName = choices("AlignerName", ALIGNER_NAMES)


def _weight(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def print_prediction(p: Prediction) -> None:
    """The score line and the per-word table (stdout)."""
    out.print(f"[bold]{escape(p.utterance_id)}[/]  \"{escape(p.transcript)}\"")
    out.print(f"score [bold]{p.score:+.3f}[/] in [-3, 3]   polarity [bold]{p.polarity}[/]   "
              f"7-class [bold]{p.class7:+d}[/] ({p.class7_name})   model {p.model}"
              + (f"   label {p.label:+.2f}" if p.label is not None else ""))
    table = Table(show_header=True, header_style="bold")
    for col in ("word", "start_s", "end_s"):
        table.add_column(col, justify="left" if col == "word" else "right")
    has_att = any(w.multimodal is not None for w in p.words)
    has_gate = any(w.gate is not None for w in p.words)
    if has_att:
        table.add_column("W_m [CLS] row", justify="right")
        table.add_column("text-only [CLS] row", justify="right")  # softmax(w_t·α_t)
    if has_gate:
        table.add_column("audio shift", justify="right")
    for w in p.words:
        row = [escape(w.word), f"{w.start_s:.2f}", f"{w.end_s:.2f}"]
        if has_att:
            row += [_weight(w.multimodal), _weight(w.text)]
        if has_gate:
            row += [_weight(w.gate)]
        table.add_row(*row)
    out.print(table)
    if p.acoustic_gate is not None:
        out.print(f"acoustic path: gate {p.acoustic_gate:.3f} (mean over hidden units, 0..1)   "
                  f"[CLS] moved by {100 * (p.acoustic_shift or 0.0):.1f} % of its norm")
    if p.audio_branch_score is not None:
        out.print(f"audio-only branch alone: {p.audio_branch_score:+.2f}   "
                  f"with the text: {p.score:+.2f}")
    if p.note:
        console.print(f"note: {p.note}")
    if p.timings_s:
        console.print("time: " + ", ".join(f"{k[:-2]} {v:.2f} s" for k, v in p.timings_s.items()
                                           if not k.endswith("_cpu_s")))


@app.command("predict", short_help="Score a clip (or a folder/manifest): sentiment, polarity and per-word attention.")
def predict_cmd(
    audio: Path = typer.Argument(..., help="A clip (wav/flac/mp3/...), or a corpus folder or "
                                 "manifest CSV for batch scoring."),
    transcript: Path | None = typer.Argument(
        None, help="The clip's transcript file (.txt/.lab). Omit for a corpus."),
    model: Path = typer.Option(..., "--model", "-m", help="Model bundle folder "
                               "(e.g. runs/demo/model/seed-0)."),
    text: str | None = typer.Option(None, "--text", help="The transcript as text, instead "
                                       "of a file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of the "
                                 "table."),
    attention_png: Path | None = typer.Option(
        None, "--attention-png", help="Write the text vs multimodal attention picture here."),
    output: Path | None = typer.Option(None, "--out", "-o", help="Batch: predictions file "
                                          "(.csv or .jsonl)."),
    transcripts: Path | None = typer.Option(None, "--transcripts", help="Batch: folder of "
                                               "transcripts kept apart from the audio."),
    force: bool = typer.Option(False, "--force", help="Batch: rescore clips already in --out."),
    aligner: AlignerName | None = typer.Option(None, "--aligner", help="Override the "
                                                  "bundle's aligner."),
    jobs: int = typer.Option(DEFAULT_JOBS, "--jobs", "-j", min=1, max=MAX_JOBS,
                             help="Batch: worker processes."),
    min_align_quality: float | None = typer.Option(
        None, "--min-align-quality",
        help="Refuse clips whose alignment quality (0-1, docs/alignment.md) is below this."),
    cluster: str | None = typer.Option(None, "--cluster", help="Batch: " + CLUSTER_HELP),
    max_duration_s: float = typer.Option(
        MAX_DURATION_S, "--max-duration", min=1.0,
        help="Refuse recordings longer than this (seconds)."),
) -> None:
    """Score a clip: align it, extract its features, run the model; print score, polarity,
    7-class label and a per-word attention table.

    \b
      cmbert predict clip.wav clip.txt --model runs/demo/model/seed-0 --attention-png att.png
      cmbert predict corpus/ --model runs/demo/model/seed-0 --out predictions.csv
    """
    from cmbert_pipe.predict import Predictor

    aligner = aligner.value if aligner is not None else None
    with user_errors():
        if is_corpus(audio):
            if transcript is not None or text is not None:
                raise ConfigError("a corpus takes no transcript argument (it has its own)", audio)
            if output is None:
                raise ConfigError("batch scoring needs --out predictions.csv (or .jsonl)")
            if cluster:
                parse_cluster(cluster)  # a malformed address: refused before any work
            _predict_corpus(audio, transcripts, model, output, force, aligner, jobs, cluster,
                            max_duration_s, min_align_quality)
            return
        if (transcript is None) == (text is None):
            raise ConfigError("give the transcript as a file argument or with --text (one)")
        console.print(f"loading {shown(model)} ...")
        with doing(f"loading the model bundle {model}"):
            predictor = Predictor.from_pretrained(model, aligner=aligner,
                                                  max_duration_s=max_duration_s,
                                                  min_align_quality=min_align_quality)
        prediction, maps = predictor.analyse(audio, text if text is not None else transcript)
        picture_error = None
        if attention_png is not None:
            from cmbert_pipe.plots import attention_png as draw

            try:  # the prediction is shown whatever happens to the picture
                draw(maps, attention_png, title=f"{prediction.transcript}  ->  "
                     f"{prediction.score:+.2f} ({prediction.class7_name})")
            except (OSError, ValueError) as e:
                picture_error = f"{type(e).__name__}: {getattr(e, 'strerror', None) or e}"
        if as_json:
            d = prediction.to_dict()
            if attention_png is not None and picture_error is None:
                d["attention_png"] = str(attention_png)
            out.print_json(json.dumps(d))
        else:
            print_prediction(prediction)
            if attention_png is not None and picture_error is None:
                console.print(f"attention picture: {shown(attention_png)}")
        if picture_error is not None:
            console.print(f"[bold red]error:[/] {shown(attention_png)}: cannot write the "
                          f"attention picture ({shown(picture_error)})", soft_wrap=True)
            raise typer.Exit(1)


def _predict_corpus(corpus: Path, transcripts: Path | None, model: Path, output: Path,
                    force: bool, aligner: str | None, jobs: int = 1,
                    cluster: str | None = None,
                    max_duration_s: float = MAX_DURATION_S,
                    min_align_quality: float | None = None) -> None:
    from cmbert_pipe.predict import Predictor, failures_of_scan, predict_corpus

    scan = discover(corpus, transcripts)
    ensure_writable_file(output, "predictions file")  # before any clip is scored
    ensure_writable_file(output.with_name(output.stem + ".summary.json"), "summary file")
    console.print(f"{len(scan.utterances)} clip(s) in {shown(corpus)}, {len(scan.failures)} "
                  f"unusable; loading {shown(model)} ...")
    with doing(f"loading the model bundle {model}"):
        predictor = Predictor.from_pretrained(model, aligner=aligner,
                                              max_duration_s=max_duration_s,
                                              min_align_quality=min_align_quality)
    with open_executor(jobs, cluster) as executor, \
            progress_bar("predict", len(scan.utterances)) as bar:
        summary = predict_corpus(predictor, scan.utterances, output, force=force,
                                 on_progress=bar, executor=executor, protect=[corpus])
    summary = with_load_failures(summary, failures_of_scan(scan.failures))
    console.print(f"predictions: {shown(output)}")
    report_summary(summary, output.with_name(output.stem + ".summary.json"))
