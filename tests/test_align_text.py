"""Transcript normalisation, offline G2P and TextGrid I/O (no audio needed, fast)."""

from __future__ import annotations

import random

import pytest

from cmbert_pipe.align.g2p import NeuralG2P, g2p
from cmbert_pipe.align.normalize import number_words, spoken_words
from cmbert_pipe.align.textgrid import read_textgrid, read_tiers, textgrid_text, write_textgrid
from cmbert_pipe.errors import AlignmentError, TranscriptError
from cmbert_pipe.schema import Alignment, PhoneInterval, WordInterval


# -- normalisation ---------------------------------------------------------------------------
def test_words_keep_their_written_form_and_drop_punctuation_tokens():
    words = spoken_words("Oh yes, they - they love ‘Myrsa’s woodland’... (really)!")
    assert [w.text for w in words] == ["Oh", "yes", "they", "they", "love", "Myrsa's",
                                       "woodland", "really"]
    assert [w.parts for w in words][:2] == [("oh",), ("yes",)]
    assert words[5].parts == ("myrsa's",)


def test_numbers_hyphens_and_symbols_are_spelled_out():
    parts = {w.text: w.parts for w in spoken_words("twenty-6 3.5 1,000 1998 1st 50% $5 R&D")}
    assert parts["twenty-6"] == ("twenty", "six")
    assert parts["3.5"] == ("three", "point", "five")
    assert parts["1,000"] == ("one", "thousand")
    assert parts["1998"] == ("nineteen", "ninety", "eight")
    assert parts["1st"] == ("first",)
    assert parts["50%"] == ("fifty", "percent")
    assert parts["$5"] == ("five", "dollars")
    assert parts["R&D"] == ("r", "and", "d")
    assert number_words(1_205_017) == [
        "one", "million", "two", "hundred", "five", "thousand", "seventeen"]


def test_annotations_are_noise_words():
    words = spoken_words("i'm saying [adif] bunch <VOCNOISE> {CG}")
    assert [(w.text, w.noise) for w in words][2:] == [
        ("[adif]", True), ("bunch", False), ("<VOCNOISE>", True), ("{CG}", True)]


def test_accents_fold_but_other_scripts_are_rejected_with_the_word():
    assert spoken_words("café naïve")[0].parts == ("cafe",)
    with pytest.raises(TranscriptError, match="not English") as err:
        spoken_words("hello 真っ昼間", source="clip.txt")
    assert err.value.path == "clip.txt"


def test_word_without_letters_and_empty_transcript_are_errors():
    with pytest.raises(TranscriptError, match="no letters"):
        spoken_words("hello ♪♪ world")
    with pytest.raises(TranscriptError, match="no words"):
        spoken_words(" ... - !")


# -- G2P --------------------------------------------------------------------------------------
def test_g2p_model_reproduces_most_of_cmudict():
    """The numpy GRU must reproduce CMUdict pronunciations it was trained on (a wrong gate
    order or a missing bias drops this to ~0)."""
    import pocketsphinx

    path = pocketsphinx.get_model_path("en-us/cmudict-en-us.dict")
    entries = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            word, *phones = line.split()
            if word.isalpha():
                entries[word] = tuple(phones)
    words = random.Random(0).sample(sorted(entries), 150)
    model = NeuralG2P()
    exact = sum(model.predict(w) == entries[w] for w in words) / len(words)
    assert exact > 0.6
    assert g2p("ajfish")[-2:] == ("IH", "SH")
    assert g2p("123") == ()


# -- TextGrids --------------------------------------------------------------------------------
def _alignment() -> Alignment:
    return Alignment(
        "utt",
        (WordInterval('say "hi"', 0.1, 0.4), WordInterval("café", 0.5, 0.9)),
        (PhoneInterval("S", 0.1, 0.2), PhoneInterval("EY", 0.2, 0.4)),
        duration_s=1.25,
    )


def test_textgrid_round_trip_and_praatio_reads_it(tmp_path):
    from praatio import textgrid as ptg

    path = write_textgrid(_alignment(), tmp_path / "sub" / "utt.TextGrid")
    back = read_textgrid(path)
    assert back == _alignment()
    tg = ptg.openTextgrid(str(path), includeEmptyIntervals=True)
    assert tg.tierNames == ("words", "phones")
    assert [e.label for e in tg.getTier("words").entries] == ["", 'say "hi"', "", "café", ""]
    assert tg.maxTimestamp == pytest.approx(1.25)
    assert not list(tmp_path.glob("sub/.*tmp"))  # atomic write leaves no temp file


def test_reads_real_mfa_textgrids_short_and_long(shared_data):
    tg_dir = shared_data / "mfa-test" / "textgrid"
    ali = read_textgrid(tg_dir / "cold_corpus3.TextGrid")
    assert len(ali.words) == 63 and ali.words[0] == WordInterval("alright", 0.88, 1.32)
    assert "<vocnoise>" in [w.word for w in ali.words]
    assert ali.phones[0].phone == "AO2" and ali.duration_s == pytest.approx(24.648)
    # Praat's short format, with a label spanning two lines, gives the same tiers as the long one
    _, _, short = read_tiers(tg_dir / "michaelandsickmichael_short_tg.TextGrid")
    _, _, long_ = read_tiers(tg_dir / "michaelandsickmichael.TextGrid")
    assert [t.name for t in short] == ["michael", "sickmichael"]
    assert [len(t.intervals) for t in short] == [len(t.intervals) for t in long_]
    assert "\n" in short[0].intervals[1][2]


def test_textgrid_errors_name_the_file(tmp_path, shared_data):
    with pytest.raises(AlignmentError, match="no 'words' tier") as err:
        read_textgrid(shared_data / "mfa-test" / "textgrid" / "61-70968-0000.TextGrid")
    assert err.value.path.endswith("61-70968-0000.TextGrid")
    cut = tmp_path / "cut.TextGrid"
    cut.write_text(textgrid_text(_alignment())[:400], encoding="utf-8")
    with pytest.raises(AlignmentError, match="truncated"):
        read_textgrid(cut)
    junk = tmp_path / "junk.TextGrid"
    junk.write_text("hello", encoding="utf-8")
    with pytest.raises(AlignmentError, match="not a Praat TextGrid"):
        read_textgrid(junk)


def test_utf16_textgrid(tmp_path):
    path = tmp_path / "u16.TextGrid"
    path.write_bytes(textgrid_text(_alignment()).encode("utf-16"))
    assert read_textgrid(path, "utt") == _alignment()
