"""An alignment depends on the utterance alone, not on what the process aligned before it.

The backend keeps one PocketSphinx decoder per worker and resets it between utterances (a
decoder carries its running cepstral mean and noise estimate from one utterance to the next:
cold_corpus3 aligned after acoustic_corpus and cold_corpus used to get other word boundaries).
Each alignment must equal the one a fresh decoder makes, bit for bit, or the cache's promise
that the same key gives the same result breaks.
"""

from __future__ import annotations

from cmbert_pipe.align import get_aligner
from cmbert_pipe.align.pocketsphinx_backend import clear_reused_decoders
from cmbert_pipe.corpus import discover_folder
from cmbert_pipe.datasets.ravdess import STATEMENTS
from cmbert_pipe.schema import Utterance


def test_alignment_does_not_depend_on_history(shared_data):
    scan = discover_folder(shared_data / "mfa-test" / "wav", shared_data / "mfa-test" / "lab")
    by_id = {u.id: u for u in scan.utterances}
    target = by_id["cold_corpus3"]

    clear_reused_decoders()
    alone = get_aligner("pocketsphinx").align(target)
    aligner = get_aligner("pocketsphinx")
    for other in ("acoustic_corpus", "cold_corpus"):
        aligner.align(by_id[other])
    after_others = aligner.align(target)

    assert after_others.words == alone.words
    assert after_others.phones == alone.phones


def _ravdess(shared_data, name: str) -> Utterance:
    path = shared_data / "ravdess-dev" / f"Actor_{name[-2:]}" / f"{name}.flac"
    return Utterance(name, path, STATEMENTS[int(name.split("-")[4])])


def test_reused_decoder_gives_what_a_fresh_one_gives(shared_data):
    """Clips of two speakers and both sentences, one of them aligned by the fallback chain
    (the wide decoder is reused too), each aligned in one sequence and each alone after the
    kept decoders were dropped: the same words, phones, method and quality."""
    names = ["03-01-01-01-01-01-01", "03-01-05-02-02-01-01", "03-01-04-01-01-02-09",
             "03-01-03-01-02-02-09", "03-01-08-02-01-02-09"]
    utts = [_ravdess(shared_data, n) for n in names]
    aligner = get_aligner("pocketsphinx")
    clear_reused_decoders()
    in_sequence = [aligner.align(u) for u in utts]
    for utt, seq in zip(utts, in_sequence, strict=True):
        clear_reused_decoders()
        alone = get_aligner("pocketsphinx").align(utt)
        assert (seq.words, seq.phones, seq.method, seq.quality) == (
            alone.words, alone.phones, alone.method, alone.quality), utt.id
    assert {a.method for a in in_sequence} >= {"viterbi", "anchored"}
