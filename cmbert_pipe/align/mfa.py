"""Montreal Forced Aligner backend: prepare a corpus folder, run ``mfa align``, read TextGrids.

    >>> aligner = MfaAligner(dictionary="english_us_arpa", acoustic_model="english_us_arpa")
    >>> aligner.command(corpus, out)     # the exact command line it runs
    ['mfa', 'align', '<corpus>', 'english_us_arpa', 'english_us_arpa', '<out>', ...]

MFA (McAuliffe et al., Interspeech 2017) needs Kaldi binaries and installs from conda-forge,
not PyPI: ``conda install -c conda-forge montreal-forced-aligner`` and then
``mfa model download acoustic english_us_arpa`` and
``mfa model download dictionary english_us_arpa``. The adapter writes every utterance as a
16 kHz mono WAV plus a ``.lab`` holding the transcript's words (one folder per speaker, file
names made safe), runs MFA once for the whole corpus, and maps the words of MFA's ``words``
tier back onto the transcript's words so the TextGrid keeps the words as the user wrote them.
"""

from __future__ import annotations

import difflib
import logging
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cmbert_pipe.align.base import Aligner, register
from cmbert_pipe.align.normalize import NORMALIZER_VERSION, SpokenWord, spoken_words
from cmbert_pipe.align.quality import fill_unplaced
from cmbert_pipe.align.textgrid import read_textgrid
from cmbert_pipe.audio import load_audio
from cmbert_pipe.errors import AlignmentError, CmbertError
from cmbert_pipe.io import atomic_write_text
from cmbert_pipe.schema import SAMPLE_RATE, Alignment, Utterance, WordInterval

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "the Montreal Forced Aligner (`mfa`) is not installed or not on PATH: install it with "
    "`conda install -c conda-forge montreal-forced-aligner`, then download its models with "
    "`mfa model download acoustic english_us_arpa` and "
    "`mfa model download dictionary english_us_arpa` (or use --aligner pocketsphinx)"
)


@dataclass(frozen=True)
class MfaConfig:
    """What changes an MFA alignment (all of it goes into cache keys)."""

    executable: str = "mfa"
    dictionary: str = "english_us_arpa"  # MFA dictionary name or path to a .dict file
    acoustic_model: str = "english_us_arpa"  # MFA acoustic model name or path to a .zip
    num_jobs: int = 1  # MFA's own -j
    beam: int = 10  # MFA default
    retry_beam: int = 40  # MFA default
    timeout_s: float = 3600.0  # s: the whole MFA run


def _safe_name(index: int) -> str:
    """File names MFA will not choke on (ids may hold spaces, slashes, non-ASCII)."""
    return f"utt{index:06d}"


def map_words(words: Sequence[SpokenWord], mfa_words: Sequence[WordInterval]) -> list[WordInterval]:
    """Put MFA's word times onto the transcript's words (as the user wrote them), in order.

    Words are matched on their lower-case spelling (longest common subsequence,
    :class:`difflib.SequenceMatcher`); a run of transcript words MFA spelled differently or
    split (clitics, ``<unk>``) shares the time between the neighbouring matches evenly.
    """
    ours = [w.text.lower() for w in words]
    theirs = [w.word.lower() for w in mfa_words]
    times: list[tuple[float, float] | None] = [None] * len(words)
    matcher = difflib.SequenceMatcher(a=ours, b=theirs, autojunk=False)
    opcodes = matcher.get_opcodes()
    for tag, i1, i2, j1, j2 in opcodes:
        if tag == "equal":
            for k in range(i2 - i1):
                times[i1 + k] = (mfa_words[j1 + k].start_s, mfa_words[j1 + k].end_s)
        elif tag == "replace" and i2 > i1 and j2 > j1:  # same span, different spelling
            start, end = mfa_words[j1].start_s, mfa_words[j2 - 1].end_s
            step = (end - start) / (i2 - i1)
            for k in range(i2 - i1):
                times[i1 + k] = (start + k * step, start + (k + 1) * step)
    # words MFA left out: share the silence between the neighbours' boundaries
    first = mfa_words[0].start_s if mfa_words else 0.0
    last = mfa_words[-1].end_s if mfa_words else first
    times = fill_unplaced(times, first, last)
    return [WordInterval(w.text, round(t[0], 4), round(t[1], 4))
            for w, t in zip(words, times, strict=True)]


@register("mfa")
class MfaAligner(Aligner):
    """Drives an installed Montreal Forced Aligner (see the module docstring)."""

    corpus_level = True

    def __init__(self, **options: Any):
        self.config = MfaConfig(**options)

    def executable(self) -> str:
        """Full path of ``mfa``; AlignmentError with the install hint if it is missing."""
        found = shutil.which(self.config.executable)
        if found is None:
            raise AlignmentError(INSTALL_HINT)
        return found

    def _version(self) -> str:
        """``mfa version`` (asked once per aligner object)."""
        if getattr(self, "_version_text", None) is None:
            try:
                exe = self.executable()
                run = subprocess.run(
                    [exe, "version"], capture_output=True, text=True, timeout=120, check=False
                )
                self._version_text = run.stdout.strip() or "unknown"
            except AlignmentError:
                return "not installed"
            except (OSError, subprocess.SubprocessError):
                self._version_text = "unknown"
        return self._version_text

    def settings(self) -> dict[str, Any]:
        return {
            "backend": "mfa",
            "version": self._version(),
            "normalizer": NORMALIZER_VERSION,
            **asdict(self.config),
        }

    def command(self, corpus_dir: Path, output_dir: Path) -> list[str]:
        """The exact ``mfa align`` command line for a prepared corpus folder."""
        c = self.config
        return [
            c.executable,
            "align",
            str(corpus_dir),
            c.dictionary,
            c.acoustic_model,
            str(output_dir),
            "--output_format",
            "long_textgrid",
            "--clean",
            "--overwrite",
            "--num_jobs",
            str(c.num_jobs),
            "--beam",
            str(c.beam),
            "--retry_beam",
            str(c.retry_beam),
        ]

    def prepare_corpus(
        self,
        utterances: Sequence[Utterance],
        corpus_dir: Path,
        on_error: Callable[[Utterance, CmbertError], None],
        waves: dict[str, np.ndarray] | None = None,
    ) -> dict[str, tuple[Utterance, list[SpokenWord], Path]]:
        """Write ``corpus_dir/<speaker>/uttNNNNNN.{wav,lab}``; returns name -> (utterance,
        words, relative path without suffix). Utterances that cannot be read go to on_error."""
        import soundfile as sf

        if corpus_dir.exists():
            shutil.rmtree(corpus_dir)
        corpus_dir.mkdir(parents=True)
        prepared: dict[str, tuple[Utterance, list[SpokenWord], Path]] = {}
        for index, utt in enumerate(utterances):
            try:
                words = spoken_words(utt.transcript, source=str(utt.transcript_path or utt.audio))
                wave = waves[utt.id] if waves and utt.id in waves else load_audio(utt.audio)
            except CmbertError as e:
                on_error(utt, e)
                continue
            name = _safe_name(index)
            speaker = "".join(ch if ch.isalnum() else "_" for ch in (utt.speaker or "speaker"))
            rel = Path(speaker) / name
            (corpus_dir / speaker).mkdir(exist_ok=True)
            sf.write(str(corpus_dir / f"{rel}.wav"), wave, SAMPLE_RATE, subtype="PCM_16")
            atomic_write_text(corpus_dir / f"{rel}.lab", " ".join(w.text for w in words) + "\n")
            prepared[name] = (utt, words, rel)
        return prepared

    def align(self, utterance: Utterance, wave: np.ndarray | None = None) -> Alignment:
        results: dict[str, Alignment | CmbertError] = {}
        import tempfile

        with tempfile.TemporaryDirectory(prefix="cmbert-mfa-") as tmp:
            self.align_corpus_level(
                [utterance], Path(tmp), lambda u, r: results.__setitem__(u.id, r),
                waves={utterance.id: wave} if wave is not None else None,
            )
        result = results[utterance.id]
        if isinstance(result, CmbertError):
            raise result
        return result

    def align_corpus_level(
        self,
        utterances: Sequence[Utterance],
        work_dir: Path,
        on_result: Callable[[Utterance, Alignment | CmbertError], None],
        waves: dict[str, np.ndarray] | None = None,
    ) -> None:
        exe = self.executable()
        work_dir = Path(work_dir)
        corpus_dir, output_dir = work_dir / "corpus", work_dir / "output"
        prepared = self.prepare_corpus(utterances, corpus_dir, on_result, waves)
        if not prepared:
            return
        cmd = [exe] + self.command(corpus_dir, output_dir)[1:]
        log.info("running %s", " ".join(cmd))
        try:
            run = subprocess.run(
                cmd, capture_output=True, text=True, timeout=self.config.timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            raise AlignmentError(f"mfa align ran past {self.config.timeout_s:.0f} s") from None
        except OSError as e:
            raise AlignmentError(f"cannot run mfa: {e}") from None
        log_path = work_dir / "mfa.log"
        atomic_write_text(log_path, f"$ {' '.join(cmd)}\n{run.stdout}\n{run.stderr}")
        if run.returncode != 0:
            tail = (run.stderr or run.stdout).strip().splitlines()[-3:]
            raise AlignmentError(
                f"mfa align failed (exit {run.returncode}): {' | '.join(tail)}", log_path
            )
        for utt, words, rel in prepared.values():
            on_result(utt, self.read_result(output_dir, rel, utt, words, log_path))

    def read_result(
        self, output_dir: Path, rel: Path, utt: Utterance, words: list[SpokenWord], log_path: Path
    ) -> Alignment | CmbertError:
        """The alignment MFA wrote for one prepared utterance (or the error saying why not)."""
        candidates = [output_dir / f"{rel}.TextGrid", output_dir / f"{rel.name}.TextGrid"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            return AlignmentError(
                f"MFA could not align this file (no TextGrid; see {log_path})", utt.audio
            )
        try:
            raw = read_textgrid(path, utt.id)
        except CmbertError as e:
            return e
        if not raw.words:
            return AlignmentError("MFA aligned no words in this file", utt.audio)
        return Alignment(
            utt.id,
            tuple(map_words(words, raw.words)),
            raw.phones,
            duration_s=raw.duration_s,
            aligner=f"mfa-{self._version()}",
        )
