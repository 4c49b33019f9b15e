"""Score new clips with a trained bundle: align, extract, normalise, run the model, explain.

    >>> from cmbert_pipe.predict import Predictor
    >>> predictor = Predictor.from_pretrained("runs/demo/model/seed-0")
    >>> p = predictor.predict("clip.wav", "I really loved this movie")   # a Prediction
    >>> p.score, p.polarity, p.class7_name                              # 2.1, "positive", ...
    >>> [(w.word, w.start_s, w.multimodal, w.text) for w in p.words]
    >>> p, maps = predictor.analyse("clip.wav", "transcript.txt")        # + word-level matrices

The clip is aligned with the aligner the bundle was trained with and its features computed
with the same feature set, pooled per word exactly as the extract stage does
(:func:`cmbert_pipe.acoustic.pool_words`), then standardised with the bundle's training
statistics (:func:`cmbert_pipe.model.inputs.prepare_batch`). Everything the bundle needs is in
the bundle; nothing is downloaded.

Everything shown comes from the model's own ``explain(batch)`` record
(:class:`cmbert_pipe.model.Explanation`); nothing here reads a model's tensors. Attention
(CM-BERT, Yang, Xu & Gao, ACM MM 2020, Fig. 4): ``W_m`` is the model's multimodal attention
``softmax(w_t·α_t + w_a·β_a + b + M)``; the text-only attention shown beside it is
``softmax(w_t·α_t + b + M)``, the same matrix without the audio term, so the difference between
the two is exactly what the audio changed. Models with an acoustic path also report the gate
of that path (its mean over hidden units) and how far it moved ``[CLS]``. Word-piece matrices are reduced to words: a row is
the mean of its word's piece rows, a column the sum of its word's piece columns (rows still sum
to 1). :func:`predict_corpus` scores a whole corpus into CSV or JSONL, resumably.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import io
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmbert_pipe.audio import MAX_DURATION_S, check_duration, load_audio, too_long_reason
from cmbert_pipe.batch import Check, Executor, ItemKey, ProgressCallback, run_stage
from cmbert_pipe.corpus import read_transcript
from cmbert_pipe.errors import AlignmentError, AudioError, ConfigError, FeatureError, ModelError
from cmbert_pipe.io import atomic_write_text, canonical_json, file_digest
from cmbert_pipe.metrics import class7
from cmbert_pipe.schema import (
    SAMPLE_RATE,
    SENTIMENT_CLASSES,
    BatchSummary,
    ItemFailure,
    Prediction,
    Utterance,
    WordAttention,
)

log = logging.getLogger(__name__)

STAGE = "predict"
DEFAULT_ALIGNER = "pocketsphinx"
OUTPUT_FORMATS = (".csv", ".jsonl")
CSV_COLUMNS = ("id", "audio", "score", "polarity", "class7", "class7_name", "label", "n_words",
               "transcript", "key", "key_parts")
KEY_COLUMNS = ("key", "key_parts")  # how a row was made: for resuming honestly


def polarity_of(score: float) -> str:
    """MOSI "has0" convention: a score >= 0 is positive."""
    return "positive" if score >= 0 else "negative"


def class7_of(score: float) -> int:
    """The 7-class label of ``score``, by the same rule as the acc7 metric."""
    return int(class7(score))


@dataclass(frozen=True)
class AttentionMaps:
    """Word-level attention of one clip: ``labels`` = ("[CLS]", words..., "[SEP]").

    ``multimodal`` and ``text`` are (n, n) with n = len(labels), rows summing to 1 (see the
    module docstring); None when the model has no attention matrix (T-BERT, shifting models).
    """

    labels: tuple[str, ...]
    multimodal: np.ndarray | None  # (n, n)
    text: np.ndarray | None  # (n, n)


def _settings_aligner(settings: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The aligner (name, options) a bundle was trained with; pocketsphinx if not recorded."""
    spec = settings.get("aligner")
    if isinstance(spec, dict) and spec.get("name"):
        return str(spec["name"]), dict(spec.get("options") or {})
    if isinstance(spec, str) and spec:
        return spec, {}
    log.warning("the bundle does not record its aligner; using %s", DEFAULT_ALIGNER)
    return DEFAULT_ALIGNER, {}


def _settings_feature_set(settings: dict[str, Any]) -> str | None:
    """The feature set a bundle was trained on; None for a text-only bundle (trained on TSVs)."""
    name = settings.get("feature_set") or (settings.get("cache_info") or {}).get("name")
    if not name and settings.get("source") == "text":
        return None
    if not name:
        raise ModelError("the bundle does not record its feature set; pass feature_set=")
    return str(name)


def _piece_groups(word_ids: Sequence[int | None], n_words: int) -> np.ndarray:
    """(n_words + 2, L) 0/1: group 0 = [CLS] (first piece), 1..n = words, last = [SEP] and the
    other special pieces after the first."""
    length = len(word_ids)
    groups = np.zeros((n_words + 2, length), dtype=np.float64)
    for i, w in enumerate(word_ids):
        if w is None:
            groups[0 if i == 0 else n_words + 1, i] = 1.0
        elif w < n_words:
            groups[1 + w, i] = 1.0
    return groups


def reduce_to_words(matrix: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(L, L) piece attention -> (G, G): mean over a group's rows, sum over its columns.

    Groups without a piece (words cut by the length limit) get NaN rows and columns."""
    counts = groups.sum(axis=1)  # (G,)
    with np.errstate(invalid="ignore", divide="ignore"):
        row_avg = groups / counts[:, None]  # (G, L)
    out = row_avg @ matrix @ groups.T  # (G, G)
    empty = counts == 0
    out[empty, :] = np.nan
    out[:, empty] = np.nan
    return out


@dataclass(frozen=True)
class PredictorSpec:
    """How to load a :class:`Predictor` again in a worker process (paths and settings only)."""

    path: str  # the bundle folder
    aligner: str | None = None  # override of the bundle's aligner
    feature_set: str | None = None  # override of the bundle's feature set
    device: str = "cpu"
    max_duration_s: float = MAX_DURATION_S  # longer clips are refused
    speaker_stats: str = ""  # audio_norm="speaker": JSON {speaker: [word stats, frame stats]}
    min_align_quality: float | None = None  # refuse clips whose alignment quality is lower


def bundle_digest(path: str | Path) -> str:
    """SHA-256 over a bundle folder's file names and bytes (the model part of predict's key)."""
    root = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(f.relative_to(root).as_posix().encode("utf-8") + b"\0")
        h.update(file_digest(f).encode("ascii"))
    return h.hexdigest()


class Predictor:
    """A loaded bundle plus the aligner and feature set it was trained with."""

    def __init__(self, bundle, aligner_name: str, aligner_options: dict[str, Any],
                 feature_set: str | None, spec: PredictorSpec | None = None):
        self.bundle = bundle
        self.aligner_name = aligner_name
        self.aligner_options = aligner_options
        self.feature_set = feature_set
        self.spec = spec  # set by from_pretrained: lets worker processes load the same
        self.max_duration_s = spec.max_duration_s if spec is not None else MAX_DURATION_S
        self._aligner = None

    @classmethod
    def from_pretrained(cls, path: str | Path, *, aligner: str | None = None,
                        feature_set: str | None = None, device: str = "cpu",
                        max_duration_s: float = MAX_DURATION_S,
                        min_align_quality: float | None = None) -> Predictor:
        """Load the bundle at ``path``; ``aligner``/``feature_set`` override what it recorded
        (a different feature set than the one trained on is refused by dimension); clips
        longer than ``max_duration_s`` are refused."""
        from cmbert_pipe.model.bundle import load_bundle

        bundle = load_bundle(path, device, lite=True)
        name, options = _settings_aligner(bundle.settings)
        if aligner is not None and aligner != name:
            name, options = aligner, {}
        fs = feature_set or _settings_feature_set(bundle.settings)
        if name == "pocketsphinx" and max_duration_s != MAX_DURATION_S:
            options = dict(options, max_duration_s=max_duration_s)  # the aligner's own limit
        spec = PredictorSpec(str(Path(path).resolve()), aligner, feature_set, str(device),
                             max_duration_s, min_align_quality=min_align_quality)
        predictor = cls(bundle, name, options, fs, spec)
        _PREDICTORS[spec] = predictor
        return predictor

    @property
    def aligner(self):
        if self._aligner is None:
            from cmbert_pipe.align import get_aligner

            self._aligner = get_aligner(self.aligner_name, **self.aligner_options)
        return self._aligner

    def warm_up(self) -> None:
        """Build the aligner and run every stage once on a synthetic tone (first-call costs)."""
        self.aligner  # noqa: B018 - instantiating loads the acoustic model
        t = np.arange(SAMPLE_RATE, dtype=np.float64) / SAMPLE_RATE
        f0_hz = 120.0 + 10.0 * np.sin(2 * np.pi * 3 * t)  # a vowel-like harmonic series
        phase = 2 * np.pi * np.cumsum(f0_hz) / SAMPLE_RATE
        voice = sum(np.sin(k * phase) / k for k in range(1, 30))
        try:
            if self.feature_set is not None:
                self._features((0.1 * voice).astype(np.float32), [("warm", 0.1, 0.9)])
        except Exception as e:  # noqa: BLE001 - best effort: a feature set may refuse a tone
            log.debug("feature warm-up skipped: %s", e)
        self._forward(("warm",), np.zeros((1, self.bundle.config.audio_dim), np.float32))

    # -- stages ------------------------------------------------------------------------------
    def _align(self, utterance: Utterance, wave: np.ndarray):
        alignment = self.aligner.align(utterance, wave=wave)
        if not alignment.words:
            raise AlignmentError("the aligner placed no word", utterance.audio)
        from cmbert_pipe.align.quality import passes

        least = self.spec.min_align_quality if self.spec else None
        if not passes(alignment.quality, least):
            raise AlignmentError(f"alignment quality {alignment.quality} (method "
                                 f"{alignment.method or 'unknown'}) is below "
                                 f"--min-align-quality {least}", utterance.audio)
        return alignment

    def _features(self, wave: np.ndarray, intervals) -> np.ndarray:
        return self._features_and_frames(wave, intervals)[0]

    def _features_and_frames(self, wave: np.ndarray, intervals
                             ) -> tuple[np.ndarray, np.ndarray]:
        """Word-pooled features (n_words, D) and the frames (T, D) they were pooled from."""
        from cmbert_pipe.acoustic import extract_frames, pool_words

        frames = extract_frames(wave, SAMPLE_RATE, self.feature_set)  # (T, D)
        pooled = pool_words(frames, intervals)  # (n_words, D)
        if pooled.shape[1] != self.bundle.config.audio_dim:
            raise FeatureError(f"feature set {self.feature_set} gives {pooled.shape[1]} columns, "
                               f"the model expects {self.bundle.config.audio_dim}")
        return pooled, frames

    def set_speaker_stats(self, stats: dict[str, tuple[Any, Any]]) -> None:
        """Per-speaker (word, frame) statistics for a model trained with
        ``audio_norm="speaker"`` (computed by :func:`predict_corpus` from the corpus itself)."""
        self._speaker_stats = dict(stats)

    def _stats_for(self, speaker: str | None):
        """(word stats, frame stats, note) for one clip."""
        b = self.bundle
        if b.config.audio_norm != "speaker":
            return b.audio_stats, b.frame_stats, ""
        known = getattr(self, "_speaker_stats", {})
        if speaker and speaker in known:
            ws, fs = known[speaker]
            return ws, fs or b.frame_stats, ("audio standardised with this speaker's statistics, "
                                             "computed from the speaker's own unlabelled clips")
        return b.audio_stats, b.frame_stats, (
            "the model standardises audio per speaker; this speaker is unknown, so the "
            "training (global) statistics were used")

    @torch.no_grad()
    def _forward(self, words: Sequence[str], word_features: np.ndarray | None,
                 frames: np.ndarray | None = None, speaker: str | None = None):
        from cmbert_pipe.model.inputs import prepare_batch

        b = self.bundle
        word_stats, frame_stats, note = self._stats_for(speaker)
        item = (tuple(words), word_features, frames) if b.config.frames \
            else (tuple(words), word_features)
        batch = prepare_batch(b.tokenizer, [item], b.config, word_stats,
                              frame_stats=frame_stats)
        device = next(b.model.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
        explanation = b.model.explain(batch)
        word_ids = b.tokenizer([list(words)], is_split_into_words=True, truncation=True,
                               max_length=b.config.max_len).word_ids(0)
        return float(explanation.score[0]), explanation, word_ids, note

    # -- public ------------------------------------------------------------------------------
    def prepare(self, audio: str | Path, transcript: str | Path, *,
                utterance_id: str | None = None, label: float | None = None,
                speaker: str | None = None) -> PreparedClip:
        """Load, align and extract one clip (everything before the model)."""
        audio = Path(audio)
        tpath = None
        text = str(transcript)
        if isinstance(transcript, Path) or (len(text) < 4096 and text.lower().endswith(
                (".txt", ".lab")) and "\n" not in text):
            tpath = Path(transcript)
            text = read_transcript(tpath)
        text = " ".join(text.split())
        timings: dict[str, float] = {}
        t0, c0 = time.perf_counter(), time.process_time()
        check_duration(audio, self.max_duration_s)  # before decoding a huge file
        wave = load_audio(audio)  # (N,) float32 16 kHz
        if wave.shape[0] / SAMPLE_RATE > self.max_duration_s:
            raise AudioError(too_long_reason(wave.shape[0] / SAMPLE_RATE, self.max_duration_s),
                             audio)
        timings["load_s"] = time.perf_counter() - t0
        timings["load_cpu_s"] = time.process_time() - c0  # all threads of this process
        utt = Utterance(utterance_id or audio.stem, audio, text, label=label,
                        speaker=speaker, transcript_path=tpath)
        t0, c0 = time.perf_counter(), time.process_time()
        alignment = self._align(utt, wave)
        timings["align_s"] = time.perf_counter() - t0
        timings["align_cpu_s"] = time.process_time() - c0  # all threads of this process
        t0, c0 = time.perf_counter(), time.process_time()
        feats = frames = None  # a text-only bundle: the alignment only gives the words' times
        if self.feature_set is not None:
            try:
                feats, frames = self._features_and_frames(wave, alignment.words)
            except FeatureError as e:
                raise FeatureError(e.reason, audio) from None
        timings["features_s"] = time.perf_counter() - t0
        timings["features_cpu_s"] = time.process_time() - c0  # all threads of this process
        return PreparedClip(utt, tuple(alignment.words), feats, frames, timings)

    def score_prepared(self, clip: PreparedClip) -> tuple[Prediction, AttentionMaps]:
        """Run the model on a prepared clip and explain the score."""
        utt, timings = clip.utterance, dict(clip.timings_s)
        words = [w.word for w in clip.words]
        t0, c0 = time.perf_counter(), time.process_time()
        raw_score, ex, word_ids, note = self._forward(words, clip.word_features, clip.frames,
                                                      utt.speaker)
        score = float(np.clip(raw_score, -3.0, 3.0))  # the regressor is unbounded
        timings["model_s"] = time.perf_counter() - t0
        timings["model_cpu_s"] = time.process_time() - c0  # all threads of this process
        groups = _piece_groups(word_ids, len(words))  # (n+2, L)

        w_m = alpha_text = gate = None
        if ex.piece_attention is not None:
            w_m = reduce_to_words(ex.piece_attention[0].astype(np.float64), groups)
            if ex.piece_text_attention is not None:
                alpha_text = reduce_to_words(ex.piece_text_attention[0].astype(np.float64),
                                             groups)
        if ex.piece_shift is not None:
            g = ex.piece_shift[0].astype(np.float64)  # (L,)
            counts = groups.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                gate = (groups @ g) / counts  # (n+2,) mean per word

        def val(arr, i):
            if arr is None:
                return None
            v = float(arr[i])
            return None if np.isnan(v) else v

        word_records = tuple(
            WordAttention(w.word, float(w.start_s), float(w.end_s),
                          multimodal=val(None if w_m is None else w_m[0], 1 + i),
                          text=val(None if alpha_text is None else alpha_text[0], 1 + i),
                          gate=val(gate, 1 + i))
            for i, w in enumerate(clip.words))
        k = class7_of(score)
        if note:
            log.info("%s: %s", utt.id, note)
        prediction = Prediction(
            utterance_id=utt.id, audio=str(utt.audio), transcript=utt.transcript, score=score,
            polarity=polarity_of(score), class7=k, class7_name=SENTIMENT_CLASSES[k + 3],
            words=word_records, model=self.bundle.config.model, label=utt.label,
            timings_s=timings,
            acoustic_gate=None if ex.acoustic_gate is None else float(ex.acoustic_gate[0]),
            acoustic_shift=None if ex.acoustic_shift is None else float(ex.acoustic_shift[0]),
            audio_branch_score=(None if ex.audio_branch_score is None
                                else float(ex.audio_branch_score[0])),
            note=note)
        maps = AttentionMaps(("[CLS]", *words, "[SEP]"), w_m, alpha_text)
        return prediction, maps

    def analyse(self, audio: str | Path, transcript: str | Path, *, utterance_id: str | None = None,
                label: float | None = None, speaker: str | None = None
                ) -> tuple[Prediction, AttentionMaps]:
        """Score one clip; ``transcript`` is the text itself or a ``.txt``/``.lab`` file.

        Returns the :class:`Prediction` and the word-level :class:`AttentionMaps`."""
        return self.score_prepared(self.prepare(audio, transcript, utterance_id=utterance_id,
                                                label=label, speaker=speaker))

    def predict(self, audio: str | Path, transcript: str | Path, **kw: Any) -> Prediction:
        """Score one clip (see :meth:`analyse`)."""
        return self.analyse(audio, transcript, **kw)[0]


@dataclass(frozen=True)
class PreparedClip:
    """A clip after alignment and feature extraction, before the model."""

    utterance: Utterance
    words: tuple  # WordInterval, ...
    word_features: np.ndarray | None  # (n_words, D) raw
    frames: np.ndarray | None  # (T, D) raw
    timings_s: dict


# -- batch ------------------------------------------------------------------------------------
_PREDICTORS: dict[PredictorSpec, Predictor] = {}  # per process: a worker loads a bundle once


def _predict_item(spec: PredictorSpec, utt: Utterance, _key: ItemKey) -> Prediction:
    """Worker: score one clip with the predictor of ``spec`` (loaded once per process)."""
    predictor = _PREDICTORS.get(spec)
    if predictor is None:
        predictor = Predictor.from_pretrained(spec.path, aligner=spec.aligner,
                                              feature_set=spec.feature_set, device=spec.device,
                                              max_duration_s=spec.max_duration_s,
                                              min_align_quality=spec.min_align_quality)
    if spec.speaker_stats and not getattr(predictor, "_speaker_stats", None):
        from cmbert_pipe.model.inputs import AudioStats

        predictor.set_speaker_stats({
            k: (AudioStats.from_dict(w), None if f is None else AudioStats.from_dict(f))
            for k, (w, f) in json.loads(spec.speaker_stats).items()})
    return predictor.predict(utt.audio, utt.transcript, utterance_id=utt.id, label=utt.label,
                             speaker=utt.speaker)


def _csv_row(p: Prediction, key: ItemKey) -> dict[str, Any]:
    return {"id": p.utterance_id, "audio": p.audio, "score": f"{p.score:.6f}",
            "polarity": p.polarity, "class7": p.class7, "class7_name": p.class7_name,
            "label": "" if p.label is None else p.label, "n_words": len(p.words),
            "transcript": p.transcript, "key": key.digest,
            "key_parts": canonical_json(dict(key.parts))}


def _not_ours(out_path: Path, why: str) -> ConfigError:
    return ConfigError(f"refusing to write predictions over it: {why}; choose another --out "
                       "(or delete the file)", out_path)


@dataclass
class _Previous:
    """What an earlier run left in the output file."""

    rows: dict[str, dict[str, Any]]  # utterance id -> CSV row or JSONL record, in file order
    cut_at: int | None = None  # JSONL: byte offset of a last line cut by a kill


def _read_previous(out_path: Path) -> _Previous:
    """Rows already in an output file, by utterance id; refuses a file this command did not
    write (another CSV, a manifest) instead of overwriting it."""
    if not out_path.exists():
        return _Previous({})
    if not out_path.is_file():
        raise _not_ours(out_path, "it is not a file")
    rows: dict[str, dict[str, Any]] = {}
    if out_path.suffix == ".jsonl":
        data = out_path.read_bytes()
        cut_at = None
        lines = data.split(b"\n")
        if lines and lines[-1] != b"":  # no final newline: the last line was cut by a kill
            cut_at = len(data) - len(lines[-1])
            log.warning("%s: the last line is incomplete (a killed run); it is dropped and that "
                        "clip recomputed", out_path)
        for lineno, line in enumerate(lines[:-1], 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except ValueError:
                raise _not_ours(out_path, f"line {lineno} is not JSON") from None
            if not isinstance(d, dict) or "utterance_id" not in d or "score" not in d:
                raise _not_ours(out_path, f"line {lineno} is not a prediction record")
            rows[str(d["utterance_id"])] = d
        return _Previous(rows, cut_at)
    with open(out_path, newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.DictReader(fh)
        header = tuple(reader.fieldnames or ())
        if not header:
            if out_path.stat().st_size == 0:
                return _Previous({})
            raise _not_ours(out_path, "it has no CSV header")
        if header[: len(CSV_COLUMNS) - len(KEY_COLUMNS)] != CSV_COLUMNS[:-len(KEY_COLUMNS)]:
            raise _not_ours(out_path, f"its columns ({', '.join(header[:6])}...) are not those "
                            "of `cmbert predict`")
        for row in reader:
            rows[row["id"]] = row
    return _Previous(rows)


def _recorded_parts(row: dict[str, Any]) -> dict[str, str] | None:
    parts = row.get("key_parts")
    if isinstance(parts, str):
        try:
            parts = json.loads(parts)
        except ValueError:
            return None
    return parts if isinstance(parts, dict) else None


def predict_corpus(
    predictor: Predictor,
    utterances: Sequence[Utterance],
    out_path: str | Path,
    *,
    force: bool = False,
    on_progress: ProgressCallback | None = None,
    jobs: int = 1,
    executor: Executor | None = None,
    protect: Sequence[str | Path] = (),
) -> BatchSummary:
    """Score every utterance into ``out_path`` (``.csv`` or ``.jsonl``, by suffix).

    JSONL gets one full :class:`Prediction` per line, appended as each clip finishes; CSV one
    summary row per clip, rewritten atomically after each clip. Each row records its key: the
    model bundle's digest, the audio's digest, the transcript, the label and the aligner and
    feature settings. A clip whose row has the same key is skipped (a killed run resumes);
    another model or setting recomputes it and the summary says which part changed; ``force``
    recomputes all. Rows of ids not in ``utterances`` are kept. A file this command did not
    write, or one of ``protect`` (the manifest) or of the corpus' own files, is refused.
    Bad clips become failures; the rest go on, in this process or on ``executor``/``jobs``.
    """
    out_path = Path(out_path)
    if out_path.suffix not in OUTPUT_FORMATS:
        raise ConfigError(f"output must end in {' or '.join(OUTPUT_FORMATS)}", out_path)
    target = out_path.resolve()
    inputs = [Path(p) for p in protect]
    for u in utterances:
        inputs += [Path(u.audio)] + ([Path(u.transcript_path)] if u.transcript_path else [])
    if any(p.resolve() == target for p in inputs):
        raise ConfigError("the output file is one of the inputs (the manifest or a clip); "
                          "choose another --out", out_path)
    previous = _read_previous(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    spec = predictor.spec or PredictorSpec(f"<in-memory {id(predictor)}>")
    if predictor.bundle.config.audio_norm == "speaker":
        # Each speaker's statistics from the corpus's own (unlabelled) clips, before scoring;
        # they travel to worker processes in the spec and are part of every clip's key.
        stats = speaker_statistics(_prepare_all(predictor, utterances),
                                   predictor.bundle.config.audio_dim)
        predictor.set_speaker_stats(stats)
        spec = dataclasses.replace(spec, speaker_stats=canonical_json(
            {k: [w.to_dict(), None if f is None else f.to_dict()] for k, (w, f)
             in sorted(stats.items())}))
        _PREDICTORS[spec] = predictor
    _PREDICTORS.setdefault(spec, predictor)
    model_digest = bundle_digest(spec.path) if predictor.spec else spec.path
    settings = {"aligner": predictor.aligner_name, "aligner_options": predictor.aligner_options,
                "feature_set": predictor.feature_set}
    if spec.speaker_stats:
        settings["speaker_stats_sha256"] = hashlib.sha256(
            spec.speaker_stats.encode("utf-8")).hexdigest()
    ids = {u.id for u in utterances}
    others = [i for i in previous.rows if i not in ids]
    if others:
        log.warning("%s: keeping %d row(s) of ids not in this corpus (e.g. %s)", out_path,
                    len(others), others[0])
    stale: set[str] = set(ids) if force else set()  # previous rows that must not survive

    def key(u: Utterance) -> ItemKey:
        return ItemKey.of(model=model_digest, audio_sha256=file_digest(u.audio),
                          transcript=u.transcript, label=u.label, settings=settings)

    def is_current(u: Utterance, k: ItemKey) -> Check:
        row = previous.rows.get(u.id)
        if row is None:
            return Check.missing()
        check = (Check(False, ("key",)) if not row.get("key")
                 else Check.against(k, row["key"], _recorded_parts(row)))
        if not check.current:
            stale.add(u.id)
        return check

    rows: dict[str, dict[str, Any]] = {}  # what the file holds, in order (filled when writing)

    def rewrite() -> None:
        if out_path.suffix == ".jsonl":
            text = "".join(json.dumps(r) + "\n" for r in rows.values())
        else:
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows.values())
            text = buf.getvalue()
        atomic_write_text(out_path, text)

    state = {"started": False}

    def start() -> None:
        """Before the first new row: keep the previous rows still current and those of other
        ids, drop the ones being recomputed, repair a cut last line."""
        state["started"] = True
        rows.update((i, r) for i, r in previous.rows.items() if i not in stale)
        if rows or out_path.exists():
            rewrite()

    def persist(u: Utterance, k: ItemKey, p: Prediction) -> None:
        if not state["started"]:
            start()
        row = (dict(p.to_dict(), key=k.digest, key_parts=dict(k.parts))
               if out_path.suffix == ".jsonl" else _csv_row(p, k))
        rows[u.id] = row
        if out_path.suffix == ".jsonl":
            with open(out_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
        else:
            rewrite()

    work = functools.partial(_predict_item, spec)
    summary = run_stage(utterances, key, is_current, work, persist, on_progress, stage=STAGE,
                        item_id=lambda u: u.id, executor=executor, jobs=jobs, force=force)
    if not state["started"] and (stale & set(previous.rows) or previous.cut_at is not None):
        start()  # nothing new, but stale rows (their clips failed now) or a cut line to fix
    return summary


def _prepare_all(predictor: Predictor, utterances: Sequence[Utterance]) -> list[PreparedClip]:
    """Align and extract every clip (failures are left to the scoring pass, which reports
    them)."""
    out = []
    for u in utterances:
        try:
            out.append(predictor.prepare(u.audio, u.transcript, utterance_id=u.id,
                                         label=u.label, speaker=u.speaker))
        except Exception as e:  # noqa: BLE001 - reported per item by the scoring pass
            log.debug("%s: not used for the speaker statistics (%s)", u.id, e)
    return out


def speaker_statistics(clips, dim: int) -> dict[str, tuple[Any, Any]]:
    """Each speaker's (word, frame) statistics over its prepared clips (labels unused)."""
    from cmbert_pipe.model.inputs import AudioStats

    groups: dict[str, list[PreparedClip]] = {}
    for c in clips:
        if c.utterance.speaker and c.word_features is not None:
            groups.setdefault(c.utterance.speaker, []).append(c)
    out = {}
    for spk, cs in groups.items():
        frames = [c.frames for c in cs if c.frames is not None]
        out[spk] = (AudioStats.from_features([c.word_features for c in cs], dim),
                    AudioStats.from_features(frames, dim) if frames else None)
    return out

def failures_of_scan(failures: Sequence[ItemFailure]) -> list[ItemFailure]:
    """Corpus-discovery failures re-labelled for the predict stage's report."""
    return [ItemFailure(f.item_id, f.path, STAGE, f.reason, f.error_type) for f in failures]
