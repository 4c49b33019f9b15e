"""Dataset adapters: RAVDESS labels/splits on the real files, the MOSI raw layout on a tree
built here, the generic folder/manifest adapters and split assignment."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest
import soundfile as sf

from cmbert_pipe.datasets import assign_splits, load_dataset, mosi_folds
from cmbert_pipe.datasets.mosi import load_mosi
from cmbert_pipe.datasets.ravdess import RavdessSplits, binary_class, load_ravdess, parse_name
from cmbert_pipe.errors import ConfigError
from cmbert_pipe.schema import Utterance


@pytest.mark.parametrize(
    "stem, emotion, label",
    [
        ("03-01-01-01-01-01-01", "neutral", 0.0),
        ("03-01-02-01-01-01-01", "calm", 1.0),
        ("03-01-02-02-01-01-01", "calm", 1.5),
        ("03-01-03-01-02-01-05", "happy", 2.0),
        ("03-01-03-02-02-01-05", "happy", 3.0),
        ("03-01-04-01-01-02-12", "sad", -2.0),
        ("03-01-05-02-01-02-12", "angry", -3.0),  # -2 * 1.5 = -3
        ("03-01-06-02-01-01-07", "fearful", -3.0),
        ("03-01-07-01-02-02-07", "disgust", -2.0),
        ("03-01-08-02-01-02-07", "surprised", 1.5),
    ],
)
def test_ravdess_labels_follow_the_data_readme(stem, emotion, label):
    name = parse_name(stem)
    assert name.emotion == emotion
    assert name.valence == label


def test_ravdess_bad_names_are_rejected():
    with pytest.raises(ValueError, match="emotion"):
        parse_name("03-01-09-01-01-01-01")
    with pytest.raises(ValueError, match="7 numeric"):
        parse_name("kids_talking")


def test_ravdess_real_folder_default_splits(shared_data):
    scan = load_ravdess(shared_data / "ravdess-dev")
    assert not scan.failures
    assert len(scan.utterances) == 720
    splits = collections.Counter(u.split for u in scan.utterances)
    assert splits == {"train": 480, "dev": 120, "test": 120}
    speakers = {s: {u.speaker for u in scan.utterances if u.split == s} for s in splits}
    assert speakers["dev"] == {"actor09", "actor10"}
    assert speakers["test"] == {"actor11", "actor12"}
    assert not speakers["train"] & (speakers["dev"] | speakers["test"])
    assert {u.transcript for u in scan.utterances} == {
        "Kids are talking by the door", "Dogs are sitting by the door"}
    positive = [u for u in scan.utterances if binary_class(u.id) == 1]
    negative = [u for u in scan.utterances if binary_class(u.id) == 0]
    assert len(negative) == 2 * len(positive)  # the README's 1 : 2
    assert all(u.label > 0 for u in positive) and all(u.label < 0 for u in negative)


def test_ravdess_custom_splits_and_overlap(shared_data):
    scan = load_dataset("ravdess", shared_data / "ravdess-dev",
                        {"train": [1, 2], "dev": [3], "test": [4]})
    assert collections.Counter(u.split for u in scan.utterances) == {
        "train": 120, "dev": 60, "test": 60}
    with pytest.raises(ConfigError, match="actor 3"):
        RavdessSplits(train=(1, 3), dev=(3,), test=(4,))


def test_ravdess_unparsable_file_is_a_failure(tmp_path):
    good = tmp_path / "03-01-03-01-01-01-01.wav"
    sf.write(good, np.zeros(1600, dtype=np.float32), 16000)
    sf.write(tmp_path / "hello.wav", np.zeros(1600, dtype=np.float32), 16000)
    scan = load_ravdess(tmp_path)
    assert [u.id for u in scan.utterances] == [good.stem]
    assert [f.item_id for f in scan.failures] == ["hello"]


def test_embedded_mosi_folds_match_the_layout_facts(shared_data):
    folds = json.loads((shared_data / "mosi-layout" / "folds.json").read_text())
    assert list(mosi_folds.TRAIN_VIDEOS) == folds["train"]
    assert list(mosi_folds.DEV_VIDEOS) == folds["dev"]
    assert list(mosi_folds.TEST_VIDEOS) == folds["test"]
    assert (len(folds["train"]), len(folds["dev"]), len(folds["test"])) == (52, 10, 31)


def _mosi_tree(root, segments):
    """Write a CMU_MOSI_Raw-shaped tree: segments = [(video, n, text, label, with_audio)]."""
    audio_dir = root / "Audio" / "WAV_16000" / "Segmented"
    text_dir = root / "Transcript" / "Segmented"
    labels_dir = root / "Labels"
    for d in (audio_dir, text_dir, labels_dir):
        d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    by_video = collections.defaultdict(list)
    label_lines = []
    for i, (video, n, text, label, with_audio) in enumerate(segments):
        if with_audio:
            sf.write(audio_dir / f"{video}_{n}.wav",
                     (0.1 * rng.standard_normal(1600)).astype(np.float32), 16000)
        if text is not None:
            by_video[video].append(f"{n}_DELIM_{text}")
        label_lines.append(f"{i * 3.0:.2f},{i * 3.0 + 2.5:.2f},{video},{n},{label}")
    for video, lines in by_video.items():
        (text_dir / f"{video}.annotprocessed").write_text("\n".join(lines) + "\n")
    (labels_dir / "OpinionLevelSentiment.csv").write_text("\n".join(label_lines) + "\n")


def test_mosi_adapter_on_a_raw_layout_tree(tmp_path):
    train_v, dev_v, test_v = (mosi_folds.TRAIN_VIDEOS[1], mosi_folds.DEV_VIDEOS[0],
                              mosi_folds.TEST_VIDEOS[2])  # ids with '-' and '_' inside
    under = next(v for v in mosi_folds.TRAIN_VIDEOS if "_" in v)
    _mosi_tree(tmp_path, [
        (train_v, 1, " UM SO THERE ARE THINGS THAT I LIKED", "1.4", True),
        (train_v, 2, "IT WAS A GOOD BOOK", "2.8", True),
        (under, 3, "TH THIS WAS XXX BAD", "-3.4", True),
        (dev_v, 1, "I DID NOT LIKE IT", "-1.6", True),
        (test_v, 4, "OKAY", "0", True),
        (test_v, 5, "NO AUDIO FOR THIS ONE", "0.2", False),
        (test_v, 6, None, "0.4", True),  # a label with no transcript line
        ("notAFoldVid", 1, "HELLO", "1", True),
    ])
    scan = load_mosi(tmp_path)
    by_id = {u.id: u for u in scan.utterances}
    assert set(by_id) == {f"{train_v}_1", f"{train_v}_2", f"{under}_3", f"{dev_v}_1",
                          f"{test_v}_4"}
    u = by_id[f"{train_v}_1"]
    assert u.transcript == "UM SO THERE ARE THINGS THAT I LIKED"
    assert u.label == pytest.approx(1.4) and u.split == "train" and u.speaker == train_v
    assert u.audio == tmp_path / "Audio/WAV_16000/Segmented" / f"{train_v}_1.wav"
    assert by_id[f"{under}_3"].label == -3.0  # clipped to the scale
    assert by_id[f"{dev_v}_1"].split == "dev" and by_id[f"{test_v}_4"].split == "test"
    reasons = {f.item_id: f.reason for f in scan.failures}
    assert "audio file not found" in reasons[f"{test_v}_5"]
    assert "no transcript for segment 6" in reasons[f"{test_v}_6"]
    assert "in no fold" in reasons["notAFoldVid_1"]


def test_mosi_custom_folds_and_missing_layout(tmp_path):
    _mosi_tree(tmp_path / "mosi", [("vidA", 1, "GOOD", "2", True), ("vidB", 1, "BAD", "-2", True)])
    folds = tmp_path / "folds.json"
    folds.write_text(json.dumps({"train": ["vidA"], "dev": [], "test": ["vidB"]}))
    scan = load_dataset("mosi", tmp_path / "mosi", {"folds": str(folds)})
    assert {(u.id, u.split) for u in scan.utterances} == {("vidA_1", "train"), ("vidB_1", "test")}
    with pytest.raises(ConfigError, match="OpinionLevelSentiment.csv"):
        load_mosi(tmp_path)


def test_unknown_dataset_and_option_are_named():
    with pytest.raises(ConfigError, match="'imdb'"):
        load_dataset("imdb", ".")
    with pytest.raises(ConfigError, match="actors"):
        load_dataset("ravdess", ".", {"actors": [1]})


def test_manifest_adapter_on_the_demo_corpus():
    from pathlib import Path

    manifest = Path(__file__).resolve().parents[1] / "assets" / "demo" / "manifest.csv"
    scan = load_dataset("manifest", manifest)
    assert not scan.failures and len(scan.utterances) >= 20
    assert {u.split for u in scan.utterances} == {"train", "dev", "test"}
    assert all(u.audio.is_file() and u.label is not None for u in scan.utterances)


def test_assign_splits_is_deterministic_and_keeps_speakers_together(tmp_path):
    utts = [Utterance(f"u{i}", tmp_path / f"u{i}.wav", "hi", speaker=f"s{i % 7}")
            for i in range(70)] + [Utterance("fixed", tmp_path / "f.wav", "hi", split="dev")]
    a, b = assign_splits(utts, 0.2, 0.2), assign_splits(utts, 0.2, 0.2)
    assert a == b
    assert a[-1].split == "dev"
    by_speaker = collections.defaultdict(set)
    for u in a[:-1]:
        by_speaker[u.speaker].add(u.split)
    assert all(len(s) == 1 for s in by_speaker.values())
    assert {u.split for u in a[:-1]} <= {"train", "dev", "test"}
    with pytest.raises(ConfigError):
        assign_splits(utts, 0.6, 0.5)
