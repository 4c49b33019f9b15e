"""Find the utterances of a corpus: a folder of audio + same-stem transcripts, or a manifest CSV.

    >>> scan = discover("corpus/")                       # clip.wav + clip.txt (or .lab), recursive
    >>> scan = discover("mfa/wav", transcripts="mfa/lab")  # transcripts kept in another folder
    >>> scan = discover("manifest.csv")                   # id,audio,transcript[,label,split,speaker]
    >>> scan.utterances, scan.failures

Items that cannot be used (a missing or unreadable transcript, a manifest row without audio)
come back as :class:`~cmbert_pipe.schema.ItemFailure` so a batch run can report them and go on.
"""

from __future__ import annotations

import codecs
import csv
import math
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from cmbert_pipe.audio import AUDIO_EXTENSIONS
from cmbert_pipe.errors import ConfigError, TranscriptError
from cmbert_pipe.schema import SPLITS, ItemFailure, Utterance

TRANSCRIPT_EXTENSIONS = (".txt", ".lab")
MAX_MANIFEST_BYTES = 1 << 30  # a manifest larger than this is not one (likely a wrong file)
MANIFEST_COLUMNS = ("id", "audio", "transcript")
OPTIONAL_COLUMNS = ("label", "split", "speaker")


@dataclass(frozen=True)
class CorpusScan:
    utterances: tuple[Utterance, ...]
    failures: tuple[ItemFailure, ...]


MAX_TRANSCRIPT_BYTES = 1 << 20  # a transcript of one utterance; more is not a transcript
_BOMS = (  # longest first: the UTF-32 LE mark begins with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def decode_transcript(data: bytes, path: str | Path | None = None) -> str:
    """Bytes of a transcript file -> text: the encoding its byte-order mark names (UTF-8/16/32),
    else UTF-8, else Latin-1. Data holding NUL or other control bytes is refused as not text."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom):].decode(encoding)
            except UnicodeDecodeError as e:
                raise TranscriptError(f"transcript starts with a {encoding.upper()} byte-order "
                                      f"mark but is not valid {encoding.upper()} ({e.reason} at "
                                      f"byte {e.start})", path) from None
            break
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")  # decodes any byte; checked below
    control = [ch for ch in text if unicodedata.category(ch) == "Cc" and ch not in "\t\n\r\f\v"]
    if control:
        raise TranscriptError(
            f"transcript is not text: it holds {len(control)} control byte(s) such as "
            f"{control[0]!r} (a binary file, or UTF-16 without a byte-order mark?)", path)
    return text


def read_transcript(path: str | Path) -> str:
    """Read a transcript file as text (see :func:`decode_transcript`), whitespace collapsed."""
    path = Path(path)
    if not path.is_file():
        raise TranscriptError("transcript file not found", path)
    size = path.stat().st_size
    if size > MAX_TRANSCRIPT_BYTES:
        raise TranscriptError(f"transcript file is {size} bytes, more than the "
                              f"{MAX_TRANSCRIPT_BYTES} one utterance may have", path)
    raw = decode_transcript(path.read_bytes(), path)
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


def _walk_audio(root: Path) -> tuple[list[Path], list[ItemFailure]]:
    """Audio files under ``root``, following linked sub-folders. A link that leads back into a
    folder already being walked (a loop) or nowhere is reported, never silently skipped."""
    found: list[Path] = []
    failures: list[ItemFailure] = []
    seen: dict[tuple[int, int], Path] = {}

    def walk(folder: Path) -> None:
        try:
            st = folder.stat()
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            failures.append(ItemFailure(folder.relative_to(root).as_posix() or ".", str(folder),
                                        "load", f"cannot read folder: {e.strerror or e}"))
            return
        ident = (st.st_dev, st.st_ino)
        if ident in seen:
            failures.append(ItemFailure(
                folder.relative_to(root).as_posix(), str(folder), "load",
                f"linked folder skipped: it leads to {seen[ident]}, already searched (a loop "
                "or a second link to the same folder)"))
            return
        seen[ident] = folder
        for entry in entries:
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
                is_file = not is_dir and entry.is_file(follow_symlinks=True)
            except OSError:
                is_dir = is_file = False
            if is_dir:
                walk(path)
            elif is_file:
                if path.suffix.lower() in AUDIO_EXTENSIONS:
                    found.append(path)
            elif entry.is_symlink() and (not path.suffix
                                         or path.suffix.lower() in AUDIO_EXTENSIONS):
                failures.append(ItemFailure(path.relative_to(root).as_posix(), str(path), "load",
                                            f"broken link skipped (points to "
                                            f"{os.readlink(path)})"))

    walk(root)
    return found, failures


def discover_folder(root: str | Path, transcripts: str | Path | None = None) -> CorpusScan:
    """Every audio file under ``root`` (recursive) with its same-stem ``.txt``/``.lab``."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError("corpus folder not found", root)
    transcripts_dir = Path(transcripts) if transcripts is not None else None
    if transcripts_dir is not None and not transcripts_dir.is_dir():
        raise ConfigError("transcripts folder not found", transcripts_dir)
    found, failures = _walk_audio(root)
    audio_files = sorted(found)
    utterances: list[Utterance] = []
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
    if manifest.stat().st_size > MAX_MANIFEST_BYTES:
        raise ConfigError(f"manifest is larger than {MAX_MANIFEST_BYTES} bytes", manifest)
    try:
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
                raise ConfigError(f"manifest has unknown column(s) {', '.join(unknown)}",
                                  manifest)
            rows = [{k.strip(): (v or "").strip() for k, v in row.items()
                     if isinstance(k, str) and isinstance(v, str | None)} for row in reader]
    except (csv.Error, UnicodeDecodeError) as e:
        raise ConfigError(f"manifest is not a UTF-8 CSV file ({e})", manifest) from None
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
            if label is not None and not math.isfinite(label):
                raise ValueError(label)
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
