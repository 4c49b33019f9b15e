"""An alignment depends on the utterance alone, not on what the process aligned before it.

A reused PocketSphinx decoder carries state between utterances: cold_corpus3 aligned after
acoustic_corpus and cold_corpus used to get other word boundaries (and a phone tier) than in a
fresh process, which breaks the cache's promise that the same key gives the same result.
"""

from __future__ import annotations

from cmbert_pipe.align import get_aligner
from cmbert_pipe.corpus import discover_folder


def test_alignment_does_not_depend_on_history(shared_data):
    scan = discover_folder(shared_data / "mfa-test" / "wav", shared_data / "mfa-test" / "lab")
    by_id = {u.id: u for u in scan.utterances}
    target = by_id["cold_corpus3"]

    alone = get_aligner("pocketsphinx").align(target)
    aligner = get_aligner("pocketsphinx")
    for other in ("acoustic_corpus", "cold_corpus"):
        aligner.align(by_id[other])
    after_others = aligner.align(target)

    assert after_others.words == alone.words
    assert after_others.phones == alone.phones
