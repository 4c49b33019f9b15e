"""Batch predict resumes by the full key (model bundle digest, audio, transcript, settings):
another model recomputes and says so, rows of other ids are kept, a file this command did not
write is refused, a JSONL line cut by a kill is repaired."""

from __future__ import annotations

import json
import shutil

import pytest
from test_predict import DEMO, bundle_dir, predictor  # noqa: F401 - module fixtures

from cmbert_pipe.errors import ConfigError
from cmbert_pipe.predict import Predictor, predict_corpus
from cmbert_pipe.schema import Prediction, Utterance

UTTS = [Utterance("pos01", DEMO / "pos01.flac", "I really loved this movie", label=3.0),
        Utterance("neg01", DEMO / "neg01.flac", "I hated this movie", label=-3.0)]


@pytest.fixture(scope="module")
def other_predictor(bundle_dir, tmp_path_factory):  # noqa: F811
    """Another model: the same bundle with one head weight changed."""
    from safetensors.torch import load_file, save_file

    from cmbert_pipe.model.bundle import write_checksums

    other = tmp_path_factory.mktemp("other") / "model"
    shutil.copytree(bundle_dir, other)
    state = load_file(str(other / "model.safetensors"))
    name = next(k for k in sorted(state) if not k.startswith("encoder") and k.endswith("bias"))
    state[name] = state[name] + 0.5
    save_file(state, str(other / "model.safetensors"))
    write_checksums(other)  # a genuinely other model, not a corrupt copy
    return Predictor.from_pretrained(other)


def test_other_model_into_the_same_out_recomputes_and_says_so(predictor, other_predictor,  # noqa: F811
                                                              tmp_path):
    out = tmp_path / "preds.csv"
    first = predict_corpus(predictor, UTTS, out)
    assert first.done == 2 and not first.changed
    same = predict_corpus(predictor, UTTS, out)
    assert same.skipped == 2 and same.done == 0
    switched = predict_corpus(other_predictor, UTTS[:1], out)
    assert switched.done == 1 and switched.changed == (("model", 1),)
    assert switched.to_dict()["recomputed_because"] == {"model": 1}
    rows = {line.split(",")[0] for line in out.read_text().splitlines()[1:]}
    assert rows == {"pos01", "neg01"}  # neg01 is not in this corpus: its row is kept
    back = predict_corpus(predictor, UTTS, out)  # pos01 was made by the other model
    assert back.done == 1 and back.skipped == 1 and back.changed == (("model", 1),)


def test_rows_of_ids_not_in_the_corpus_are_kept(predictor, tmp_path):  # noqa: F811
    out = tmp_path / "preds.jsonl"
    predict_corpus(predictor, UTTS[1:], out)
    predict_corpus(predictor, UTTS[:1], out)
    ids = [json.loads(line)["utterance_id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == ["neg01", "pos01"]


def test_unrelated_csv_and_the_manifest_are_refused_untouched(predictor, tmp_path):  # noqa: F811
    other = tmp_path / "sales.csv"
    other.write_text("region,total\nnorth,12\n")
    with pytest.raises(ConfigError, match="refusing to write predictions over it"):
        predict_corpus(predictor, UTTS, other)
    assert other.read_text() == "region,total\nnorth,12\n"
    manifest = tmp_path / "m.csv"
    text = f"id,audio,transcript\npos01,{DEMO / 'pos01.flac'},I really loved this movie\n"
    manifest.write_text(text)
    with pytest.raises(ConfigError, match="one of the inputs"):
        predict_corpus(predictor, UTTS, manifest, protect=[manifest])
    assert manifest.read_text() == text
    notes = tmp_path / "notes.jsonl"
    notes.write_text('{"note": "mine"}\n')
    with pytest.raises(ConfigError, match="not a prediction record"):
        predict_corpus(predictor, UTTS, notes)
    assert notes.read_text() == '{"note": "mine"}\n'


def test_a_jsonl_line_cut_by_a_kill_is_repaired_not_glued(predictor, tmp_path):  # noqa: F811
    out = tmp_path / "preds.jsonl"
    predict_corpus(predictor, UTTS, out)
    data = out.read_bytes()
    out.write_bytes(data[: len(data) - 40])  # the last record cut mid-line, no newline
    again = predict_corpus(predictor, UTTS, out)
    assert again.skipped == 1 and again.done == 1
    lines = out.read_text().splitlines()
    records = [Prediction.from_dict(json.loads(line)) for line in lines]  # every line parses
    assert sorted(r.utterance_id for r in records) == ["neg01", "pos01"]
