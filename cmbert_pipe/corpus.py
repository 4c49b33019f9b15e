"""Find the utterances of a corpus: a folder of audio + same-stem transcripts, or a manifest CSV.

    >>> scan = discover("corpus/")                       # clip.wav + clip.txt (or .lab), recursive
    >>> scan = discover("mfa/wav", transcripts="mfa/lab")  # transcripts kept in another folder
    >>> scan = discover("manifest.csv")                   # id,audio,transcript[,label,split,speaker]
    >>> scan.utterances, scan.failures

Items that cannot be used (a missing or unreadable transcript, a manifest row without audio)
come back as :class:`~cmbert_pipe.schema.ItemFailure` so a batch run can report them and go on.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from cmbert_pipe.audio import AUDIO_EXTENSIONS
from cmbert_pipe.errors import ConfigError, TranscriptError
from cmbert_pipe.schema import SPLITS, ItemFailure, Utterance

TRANSCRIPT_EXTENSIONS = (".txt", ".lab")
MANIFEST_COLUMNS = ("id", "audio", "transcript")
OPTIONAL_COLUMNS = ("label", "split", "speaker")


@dataclass(frozen=True)
class CorpusScan:
    utterances: tuple[Utterance, ...]
    failures: tuple[ItemFailure, ...]


def read_transcript(path: str | Path) -> str:
    """Read a transcript file as text (UTF-8, BOM tolerated), whitespace collapsed."""
    path = Path(path)
    if not path.is_file():
        raise TranscriptError("transcript file not found", path)
    try:
        raw = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            raw = path.read_bytes().decode("latin-1")
        except Exception as e:  # pragma: no cover - latin-1 decodes any byte
            raise TranscriptError(f"cannot decode transcript: {e}", path) from None
    text = " ".join(raw.split())
    if not text:
        raise TranscriptError("transcript is empty", path)
    return text


def _find_transcript(audio: Path, transcripts_dir: Path | None, root: Path) -> Path | None:
    folders = [audio.parent]
    if transcripts_dir is not None:
        rel_parent = audio.parent.relative_to(root) if audio.is_relative_to(root) else Path()
        folders = [transcripts_dir / rel_parent, transcripts_dir]
    for folder in folders:
        for ext in TRANSCRIPT_EXTENSIONS:
            candidate = folder / (audio.stem + ext)
            if candidate.is_file():
                return candidate
    return None


def _utterance_id(audio: Path, root: Path) -> str:
    rel = audio.relative_to(root)
    return rel.with_suffix("").as_posix()


def discover_folder(root: str | Path, transcripts: str | Path | None = None) -> CorpusScan:
    """Every audio file under ``root`` (recursive) with its same-stem ``.txt``/``.lab``."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError("corpus folder not found", root)
    transcripts_dir = Path(transcripts) if transcripts is not None else None
    if transcripts_dir is not None and not transcripts_dir.is_dir():
        raise ConfigError("transcripts folder not found", transcripts_dir)
    audio_files = sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
    )
    utterances: list[Utterance] = []
    failures: list[ItemFailure] = []
    seen: dict[str, Path] = {}
    for audio in audio_files:
        uid = _utterance_id(audio, root)
        if uid in seen:  # clip.wav and clip.flac side by side: keep the first, report the other
            failures.append(
                ItemFailure(uid, str(audio), "load", f"duplicate utterance id (also {seen[uid]})")
            )
            continue
        seen[uid] = audio
        tpath = _find_transcript(audio, transcripts_dir, root)
        if tpath is None:
            where = transcripts_dir or audio.parent
            failures.append(
                ItemFailure(
                    uid,
                    str(audio),
                    "load",
                    f"no transcript {audio.stem}.txt or {audio.stem}.lab in {where}",
                    "TranscriptError",
                )
            )
            continue
        try:
            text = read_transcript(tpath)
        except TranscriptError as e:
            failures.append(ItemFailure(uid, e.path, "load", e.reason, "TranscriptError"))
            continue
        utterances.append(Utterance(uid, audio, text, transcript_path=tpath))
    return CorpusScan(tuple(utterances), tuple(failures))


def discover_manifest(manifest: str | Path) -> CorpusScan:
    """Rows of a manifest CSV. Relative audio paths are relative to the manifest's folder.

    The ``transcript`` column holds the text itself, or the path of a ``.txt``/``.lab`` file.
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise ConfigError("manifest not found", manifest)
    with open(manifest, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in MANIFEST_COLUMNS if c not in header]
        if missing:
            raise ConfigError(
                f"manifest lacks column(s) {', '.join(missing)} (has: {', '.join(header)})",
                manifest,
            )
        unknown = [c for c in header if c not in MANIFEST_COLUMNS + OPTIONAL_COLUMNS]
        if unknown:
            raise ConfigError(f"manifest has unknown column(s) {', '.join(unknown)}", manifest)
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    base = manifest.parent
    utterances: list[Utterance] = []
    failures: list[ItemFailure] = []
    seen: set[str] = set()
    for lineno, row in enumerate(rows, start=2):
        uid = row["id"]
        where = f"{manifest}:{lineno}"
        if not uid or uid in seen:
            reason = "empty id" if not uid else f"duplicate id {uid!r}"
            failures.append(ItemFailure(uid or where, where, "load", reason, "ConfigError"))
            continue
        seen.add(uid)
        audio = Path(row["audio"])
        audio = audio if audio.is_absolute() else base / audio
        text = row["transcript"]
        tpath = None
        if text.lower().endswith(TRANSCRIPT_EXTENSIONS):
            tpath = Path(text) if Path(text).is_absolute() else base / text
        try:
            if tpath is not None:
                text = read_transcript(tpath)
            elif not text:
                raise TranscriptError(f"row {lineno}: transcript is empty", manifest)
            label = float(row["label"]) if row.get("label") else None
        except TranscriptError as e:
            failures.append(ItemFailure(uid, e.path, "load", e.reason, "TranscriptError"))
            continue
        except ValueError:
            failures.append(
                ItemFailure(uid, where, "load", f"label {row['label']!r} is not a number")
            )
            continue
        split = row.get("split") or None
        if split is not None and split not in SPLITS:
            failures.append(
                ItemFailure(uid, where, "load", f"split {split!r} is not one of {SPLITS}")
            )
            continue
        utterances.append(
            Utterance(
                uid,
                audio,
                " ".join(text.split()),
                label=label,
                split=split,
                speaker=row.get("speaker") or None,
                transcript_path=tpath,
            )
        )
    return CorpusScan(tuple(utterances), tuple(failures))


def discover(corpus: str | Path, transcripts: str | Path | None = None) -> CorpusScan:
    """A folder or a ``.csv`` manifest (see the module docstring)."""
    corpus = Path(corpus)
    if corpus.suffix.lower() == ".csv":
        if transcripts is not None:
            raise ConfigError("--transcripts applies to folders, not to a manifest", corpus)
        return discover_manifest(corpus)
    return discover_folder(corpus, transcripts)


def single_clip(audio: str | Path, transcript: str | Path) -> Utterance:
    """One clip and its transcript file (the ``cmbert align clip.wav transcript.txt`` form)."""
    audio = Path(audio)
    tpath = Path(transcript)
    return Utterance(audio.stem, audio, read_transcript(tpath), transcript_path=tpath)
