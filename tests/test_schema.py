"""Cross-stage records survive a round trip through their dict form."""

from pathlib import Path

from cmbert_pipe.schema import (
    Alignment,
    BatchSummary,
    FeatureRecord,
    ItemFailure,
    PhoneInterval,
    Utterance,
    WordInterval,
)


def test_round_trips():
    u = Utterance("a/b", Path("/x/b.wav"), "hello world", 1.5, "train", "s1", Path("/x/b.txt"))
    assert Utterance.from_dict(u.to_dict()) == u
    a = Alignment("a/b", (WordInterval("hello", 0.1, 0.4),), (PhoneInterval("HH", 0.1, 0.2),),
                  1.0, "pocketsphinx")
    assert Alignment.from_dict(a.to_dict()) == a
    r = FeatureRecord("a/b", "k" * 64, "entries/kk/k.npz", "covarep74", "1", 74, 2, 100)
    assert FeatureRecord.from_dict(r.to_dict()) == r
    f = ItemFailure("a/b", "/x/b.wav", "align", "silent", "AudioError")
    assert ItemFailure.from_dict(f.to_dict()) == f
    s = BatchSummary("align", 3, 1, 1, (f,))
    assert s.to_dict()["failed"] == 1 and not s.ok


def test_optional_fields_from_csv_like_dicts():
    u = Utterance.from_dict({"id": "x", "audio": "x.wav", "transcript": "hi", "label": "",
                             "split": "", "speaker": None})
    assert u.label is None and u.split is None and u.speaker is None
