"""`--cluster` end to end on real RAVDESS clips: a local Dask cluster (2 worker processes) gives
the same TextGrids, the same content keys and the same features as the local process pool;
an unreachable scheduler is one clear error and nothing is written."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cmbert_pipe.cache import FeatureCache
from cmbert_pipe.cli import app

STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
CLIPS = ("Actor_01/03-01-01-01-01-01-01", "Actor_01/03-01-03-01-02-01-01",
         "Actor_02/03-01-02-01-02-01-02")


@pytest.fixture(scope="module")
def manifest(shared_data, tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "four.csv"
    rows = ["id,audio,transcript"]
    for clip in CLIPS:
        stem = clip.split("/")[1]
        rows.append(f"{stem},{shared_data / 'ravdess-dev' / clip}.flac,"
                    f"{STATEMENTS[stem.split('-')[4]]}")
    path.write_text("\n".join(rows) + "\n")
    return path


def _invoke(*args: str):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result


def test_local_dask_cluster_matches_the_process_pool(manifest, tmp_path):
    pool, dask = tmp_path / "pool", tmp_path / "dask"
    r = _invoke("align", manifest, "--out", pool / "align", "--jobs", 2)
    assert r.exit_code == 0, r.output
    r = _invoke("align", manifest, "--out", dask / "align", "--cluster", "local:2")
    assert r.exit_code == 0, r.output
    for clip in CLIPS:
        stem = clip.split("/")[1]
        assert (pool / "align" / f"{stem}.TextGrid").read_bytes() == \
            (dask / "align" / f"{stem}.TextGrid").read_bytes()
        side = [json.loads((d / "align" / f"{stem}.align.json").read_text())
                for d in (pool, dask)]
        assert side[0]["key"] == side[1]["key"] and side[0]["key_parts"] == side[1]["key_parts"]
    for d, flags in ((pool, ("--jobs", 2)), (dask, ("--cluster", "local:2"))):
        r = _invoke("extract-audio", manifest, "--alignments", d / "align", "--out",
                    d / "cache", "--features", "egemaps", *flags)
        assert r.exit_code == 0, r.output
    rows = [FeatureCache(d / "cache").read_index() for d in (pool, dask)]
    assert [rec.key for _, rec in rows[0]] == [rec.key for _, rec in rows[1]]
    assert len(rows[0]) == len(CLIPS)
    for (_, a), (_, b) in zip(rows[0], rows[1], strict=True):
        fa = FeatureCache(pool / "cache").get(a.key).arrays["word_features"]
        fb = FeatureCache(dask / "cache").get(b.key).arrays["word_features"]
        np.testing.assert_array_equal(fa, fb)
    # resume is the same whatever the executor: nothing left to do
    r = _invoke("extract-audio", manifest, "--alignments", dask / "align", "--out",
                dask / "cache", "--features", "egemaps", "--cluster", "local:2")
    assert r.exit_code == 0 and f"{len(CLIPS)} already current" in r.output, r.output


def test_unreachable_scheduler_names_it_and_writes_nothing(manifest, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    t0 = time.monotonic()
    r = _invoke("align", manifest, "--out", tmp_path / "out", "--cluster", address)
    assert r.exit_code == 2 and address in r.output, r.output
    assert time.monotonic() - t0 < 20
    assert not (tmp_path / "out").exists()
    r = _invoke("align", manifest, "--out", tmp_path / "out", "--cluster", "local")
    assert r.exit_code == 2 and "local:N" in r.output and not (tmp_path / "out").exists()


def test_a_rerun_says_which_key_part_changed(tmp_path):
    """One mechanism for every stage: an edited transcript re-aligns and re-extracts that clip
    and the summaries name what changed; the untouched clip stays current."""
    from cmbert_pipe.align import align_corpus, get_aligner
    from cmbert_pipe.extract import extract_corpus
    from cmbert_pipe.schema import Utterance

    demo = Path(__file__).resolve().parents[1] / "assets" / "demo"
    utts = [Utterance("pos01", demo / "pos01.flac", "I really loved this movie"),
            Utterance("neg01", demo / "neg01.flac", "I hated this movie")]
    aligner = get_aligner("pocketsphinx")
    align_corpus(utts, tmp_path / "align", aligner)
    extract_corpus(utts, tmp_path / "align", tmp_path / "cache", feature_set="egemaps")
    edited = [utts[0], Utterance("neg01", demo / "neg01.flac", "I hated that movie")]
    again = align_corpus(edited, tmp_path / "align", aligner)
    assert (again.skipped, again.done, again.changed) == (1, 1, (("transcript", 1),))
    summary = extract_corpus(edited, tmp_path / "align", tmp_path / "cache",
                             feature_set="egemaps")
    assert (summary.skipped, summary.done) == (1, 1)
    assert dict(summary.changed) == {"alignment": 1, "transcript": 1}
