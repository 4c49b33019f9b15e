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

Attention (CM-BERT, Yang, Xu & Gao, ACM MM 2020, Fig. 4): ``W_m`` is the model's multimodal
attention ``softmax(w_t·α_t + w_a·β_a + b + M)``; the text-only attention shown beside it is
``softmax(w_t·α_t + b + M)``, the same matrix without the audio term, so the difference between
the two is exactly what the audio changed. Word-piece matrices are reduced to words: a row is
the mean of its word's piece rows, a column the sum of its word's piece columns (rows still sum
to 1). :func:`predict_corpus` scores a whole corpus into CSV or JSONL, resumably.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmbert_pipe.audio import MAX_DURATION_S, check_duration, load_audio, too_long_reason
from cmbert_pipe.batch import run_batch
from cmbert_pipe.cache import atomic_write_text
from cmbert_pipe.corpus import read_transcript
from cmbert_pipe.errors import AlignmentError, AudioError, ConfigError, FeatureError, ModelError
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
               "transcript")


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


def _masked_softmax(scores: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """softmax over real-token columns; padding rows zero. scores (L, L), token_mask (L,)."""
    masked = scores.masked_fill(~token_mask[None, :], float("-inf"))
    return torch.softmax(masked, dim=-1) * token_mask[:, None]


class Predictor:
    """A loaded bundle plus the aligner and feature set it was trained with."""

    def __init__(self, bundle, aligner_name: str, aligner_options: dict[str, Any],
                 feature_set: str | None, max_duration_s: float = MAX_DURATION_S):
        self.bundle = bundle
        self.max_duration_s = max_duration_s
        self.aligner_name = aligner_name
        self.aligner_options = aligner_options
        self.feature_set = feature_set
        self._aligner = None

    @classmethod
    def from_pretrained(cls, path: str | Path, *, aligner: str | None = None,
                        feature_set: str | None = None, device: str = "cpu",
                        max_duration_s: float = MAX_DURATION_S) -> Predictor:
        """Load the bundle at ``path``; ``aligner``/``feature_set`` override what it recorded
        (a different feature set than the one trained on is refused by dimension); clips
        longer than ``max_duration_s`` are refused."""
        from cmbert_pipe.model.bundle import load_bundle

        bundle = load_bundle(path, device)
        name, options = _settings_aligner(bundle.settings)
        if aligner is not None and aligner != name:
            name, options = aligner, {}
        fs = feature_set or _settings_feature_set(bundle.settings)
        if name == "pocketsphinx":
            options = dict(options, max_duration_s=max_duration_s)
        return cls(bundle, name, options, fs, max_duration_s)

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
        return alignment

    def _features(self, wave: np.ndarray, intervals) -> np.ndarray:
        from cmbert_pipe.acoustic import extract_frames, pool_words

        frames = extract_frames(wave, SAMPLE_RATE, self.feature_set)  # (T, D)
        pooled = pool_words(frames, intervals)  # (n_words, D)
        if pooled.shape[1] != self.bundle.config.audio_dim:
            raise FeatureError(f"feature set {self.feature_set} gives {pooled.shape[1]} columns, "
                               f"the model expects {self.bundle.config.audio_dim}")
        return pooled

    @torch.no_grad()
    def _forward(self, words: Sequence[str], word_features: np.ndarray | None):
        from cmbert_pipe.model.inputs import prepare_batch

        b = self.bundle
        batch = prepare_batch(b.tokenizer, [(tuple(words), word_features)], b.config,
                              b.audio_stats)
        device = next(b.model.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
        out = b.model(**batch)
        word_ids = b.tokenizer([list(words)], is_split_into_words=True, truncation=True,
                               max_length=b.config.max_len).word_ids(0)
        return float(out.pred[0]), out.extras, batch["attention_mask"][0].bool(), word_ids

    # -- public ------------------------------------------------------------------------------
    def analyse(self, audio: str | Path, transcript: str | Path, *, utterance_id: str | None = None,
                label: float | None = None) -> tuple[Prediction, AttentionMaps]:
        """Score one clip; ``transcript`` is the text itself or a ``.txt``/``.lab`` file.

        Returns the :class:`Prediction` and the word-level :class:`AttentionMaps`."""
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
                        transcript_path=tpath)
        t0, c0 = time.perf_counter(), time.process_time()
        alignment = self._align(utt, wave)
        timings["align_s"] = time.perf_counter() - t0
        timings["align_cpu_s"] = time.process_time() - c0  # all threads of this process
        t0, c0 = time.perf_counter(), time.process_time()
        feats = None  # a text-only bundle: the alignment only gives the words' times
        if self.feature_set is not None:
            try:
                feats = self._features(wave, alignment.words)  # (n_words, D)
            except FeatureError as e:
                raise FeatureError(e.reason, audio) from None
        timings["features_s"] = time.perf_counter() - t0
        timings["features_cpu_s"] = time.process_time() - c0  # all threads of this process
        words = [w.word for w in alignment.words]
        t0, c0 = time.perf_counter(), time.process_time()
        raw_score, extras, token_mask, word_ids = self._forward(words, feats)
        score = float(np.clip(raw_score, -3.0, 3.0))  # the regressor is unbounded
        timings["model_s"] = time.perf_counter() - t0
        timings["model_cpu_s"] = time.process_time() - c0  # all threads of this process
        groups = _piece_groups(word_ids, len(words))  # (n+2, L)

        w_m = alpha_text = gate = None
        if "W_m" in extras and "alpha_t" in extras:
            model = self.bundle.model
            w_t = float(getattr(model, "w_t", torch.tensor(1.0)).detach())
            w_m = reduce_to_words(extras["W_m"][0].float().cpu().numpy(), groups)
            text_att = _masked_softmax(w_t * extras["alpha_t"][0].float().cpu(),
                                       token_mask.cpu())
            alpha_text = reduce_to_words(text_att.numpy(), groups)
        if "gate" in extras:
            g = extras["gate"][0].float().cpu().numpy()  # (L,)
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
            for i, w in enumerate(alignment.words))
        k = class7_of(score)
        prediction = Prediction(
            utterance_id=utt.id, audio=str(audio), transcript=text, score=score,
            polarity=polarity_of(score), class7=k, class7_name=SENTIMENT_CLASSES[k + 3],
            words=word_records, model=self.bundle.config.model, label=label,
            timings_s=timings)
        maps = AttentionMaps(("[CLS]", *words, "[SEP]"), w_m, alpha_text)
        return prediction, maps

    def predict(self, audio: str | Path, transcript: str | Path, **kw: Any) -> Prediction:
        """Score one clip (see :meth:`analyse`)."""
        return self.analyse(audio, transcript, **kw)[0]


# -- batch ------------------------------------------------------------------------------------
def _csv_row(p: Prediction) -> dict[str, Any]:
    return {"id": p.utterance_id, "audio": p.audio, "score": f"{p.score:.6f}",
            "polarity": p.polarity, "class7": p.class7, "class7_name": p.class7_name,
            "label": "" if p.label is None else p.label, "n_words": len(p.words),
            "transcript": p.transcript}


def _read_done(out_path: Path) -> dict[str, dict[str, Any]]:
    """Rows already in an output file (for resuming), by utterance id."""
    if not out_path.is_file():
        return {}
    rows: dict[str, dict[str, Any]] = {}
    if out_path.suffix == ".jsonl":
        for line in out_path.read_text(encoding="utf-8").splitlines():
            try:
                d = json.loads(line)
            except ValueError:  # a line cut by a kill: dropped, recomputed
                continue
            rows[d["utterance_id"]] = d
    else:
        with open(out_path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                rows[row["id"]] = row
    return rows


def predict_corpus(
    predictor: Predictor,
    utterances: Sequence[Utterance],
    out_path: str | Path,
    *,
    force: bool = False,
    on_progress: Callable[[int, int, int], None] | None = None,
) -> BatchSummary:
    """Score every utterance into ``out_path`` (``.csv`` or ``.jsonl``, by suffix).

    JSONL gets one full :class:`Prediction` per line, appended as each clip finishes; CSV one
    summary row per clip, rewritten atomically after each clip. Clips already in the file are
    skipped (a killed run resumes) unless ``force``. Bad clips become failures; the rest go on.
    """
    out_path = Path(out_path)
    if out_path.suffix not in OUTPUT_FORMATS:
        raise ConfigError(f"output must end in {' or '.join(OUTPUT_FORMATS)}", out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    done = {} if force else _read_done(out_path)
    if force and out_path.exists():
        out_path.unlink()
    todo = [u for u in utterances if u.id not in done]
    csv_rows = [done[u.id] for u in utterances if u.id in done] if out_path.suffix == ".csv" \
        else []

    def work(u: Utterance) -> Prediction:
        return predictor.predict(u.audio, u.transcript, utterance_id=u.id, label=u.label)

    def keep(_u: Utterance, p: Prediction) -> None:
        if out_path.suffix == ".jsonl":
            with open(out_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(p.to_dict()) + "\n")
        else:
            csv_rows.append(_csv_row(p))
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS))
            writer.writeheader()
            writer.writerows(csv_rows)
            atomic_write_text(out_path, buf.getvalue())

    skipped = len(utterances) - len(todo)
    if on_progress is not None:
        on_progress(skipped, 0, len(utterances))
    _, failures = run_batch(
        todo, work, stage=STAGE, item_id=lambda u: u.id, jobs=1, on_result=keep,
        on_progress=(lambda d, f, _t: on_progress(skipped + d, f, len(utterances)))
        if on_progress else None)
    return BatchSummary(STAGE, len(utterances), len(todo) - len(failures), skipped,
                        tuple(failures))


def failures_of_scan(failures: Sequence[ItemFailure]) -> list[ItemFailure]:
    """Corpus-discovery failures re-labelled for the predict stage's report."""
    return [ItemFailure(f.item_id, f.path, STAGE, f.reason, f.error_type) for f in failures]
