"""Transcript normalisation for an English aligner: what to say for each word the user wrote.

    >>> [w.text for w in spoken_words("Oh yes, they - they love 'Myrsa's woodland'.")]
    ['Oh', 'yes', 'they', 'they', 'love', "Myrsa's", 'woodland']
    >>> spoken_words("twenty-6 [noise]")[0].parts
    ('twenty', 'six')

Each whitespace-separated token of the transcript becomes one :class:`SpokenWord` whose
``text`` is the token as written with surrounding punctuation trimmed (the TextGrid shows
that), and whose ``parts`` are the lower-case ASCII keys to look up in a pronunciation
dictionary (a hyphenated or numeric token may need several). Tokens made of punctuation only
(``-``, ``...``) are not words and are dropped. Annotations in brackets (``[noise]``,
``<VOCNOISE>``, ``{CG}``) are kept as words marked ``noise`` (aligned to a noise model).
Text in a non-Latin script, or a token with no letters or digits (``♪``), raises
:class:`~cmbert_pipe.errors.TranscriptError` naming the word.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from cmbert_pipe.errors import TranscriptError

NORMALIZER_VERSION = "2"  # bump when the output of spoken_words changes (it is in cache keys)

APOSTROPHES = "\u2019\u2018\u02bc\u0060\u00b4"  # typographic apostrophes -> "'"
BRACKETS = {"[": "]", "<": ">", "{": "}", "(": ")"}
SYMBOL_WORDS = {"&": "and", "%": "percent", "+": "plus", "@": "at", "=": "equals", "$": "dollars"}

_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)
_TENS = ("_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_IRREGULAR = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}


# Where a token splits into parts: hyphens, slashes, brackets, and . or , not inside a number.
_SPLIT = re.compile(r"[-_/\u2010-\u2015:;!?\"()\[\]{}<>]+|(?<!\d)[.,]+|[.,]+(?!\d)")


@dataclass(frozen=True)
class SpokenWord:
    """One transcript word: ``text`` as written (trimmed), ``parts`` to pronounce, in order."""

    text: str
    parts: tuple[str, ...]
    noise: bool = False  # a bracketed annotation such as [laughter] or <VOCNOISE>


def number_words(n: int) -> list[str]:
    """Cardinal English words for a non-negative integer: 1205 -> one thousand two hundred five."""
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        tens, ones = divmod(n, 10)
        return [_TENS[tens]] + ([_ONES[ones]] if ones else [])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return [_ONES[hundreds], "hundred"] + (number_words(rest) if rest else [])
    for scale, name in _SCALES:
        if n >= scale:
            high, rest = divmod(n, scale)
            return number_words(high) + [name] + (number_words(rest) if rest else [])
    raise AssertionError("unreachable")


def _year_words(n: int) -> list[str]:
    """1998 -> nineteen ninety eight; 2005 -> two thousand five; 1900 -> nineteen hundred."""
    high, low = divmod(n, 100)
    if 2000 <= n < 2010:
        return number_words(n)
    if low == 0:
        return number_words(high) + ["hundred"]
    return number_words(high) + (["oh"] if low < 10 else []) + number_words(low)


def _ordinal(words: list[str]) -> list[str]:
    last = words[-1]
    if last in _ORDINAL_IRREGULAR:
        last = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last = last + "th"
    return words[:-1] + [last]


def _digits_to_words(chunk: str) -> list[str]:
    """Spell a chunk that holds digits: '26' '3.5' '1st' '1990s' '1,000' '50%' '$5'."""
    m = re.fullmatch(r"(\$?)(\d[\d,]*)(?:\.(\d+))?(st|nd|rd|th|s|%)?", chunk)
    if m is None:  # digits mixed with letters ("mp3", "4x4"): spell the digits one by one
        out: list[str] = []
        for piece in re.findall(r"\d+|[a-z']+", chunk):
            out += number_words(int(piece)) if piece.isdigit() else [piece]
        return out
    dollar, integer, fraction, suffix = m.groups()
    digits = integer.replace(",", "")
    n = int(digits)
    if dollar and suffix is None and (fraction is None or len(fraction) == 2):
        return _money_words(n, int(fraction) if fraction else 0)
    grouped = "," in integer  # "1,250" is a quantity, never a year
    if (fraction is None and suffix in (None, "s") and len(digits) == 4 and 1100 <= n <= 2099
            and not grouped):
        words = _year_words(n)
    else:
        words = number_words(n)
    if fraction is not None:
        words += ["point"] + [_ONES[int(d)] for d in fraction]
    if suffix in ("st", "nd", "rd", "th"):
        words = _ordinal(words)
    elif suffix == "s":
        last = words[-1]
        words = words[:-1] + [last[:-1] + "ies" if last.endswith("y") else last + "s"]
    elif suffix == "%":
        words.append("percent")
    if dollar:
        words.append("dollars")
    return words


def _money_words(dollars: int, cents: int) -> list[str]:
    """As people read prices: $5.99 -> five dollars ninety nine; $1 -> one dollar;
    $0.50 -> fifty cents; $2.05 -> two dollars and five cents."""
    words: list[str] = []
    if dollars or not cents:
        words = number_words(dollars) + ["dollar" if dollars == 1 else "dollars"]
    if cents:
        if not words:
            return number_words(cents) + ["cent" if cents == 1 else "cents"]
        if cents < 10:
            return words + ["and"] + number_words(cents) + ["cent" if cents == 1 else "cents"]
        words += number_words(cents)
    return words


def _is_punctuation(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P")


def _ascii_fold(text: str) -> str:
    """Strip diacritics (é -> e); letters with no ASCII base are kept as they are."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _trim(token: str) -> str:
    """Drop punctuation around a token, keeping a bracketed annotation and $/% signs whole."""
    start, end = 0, len(token)
    while start < end and _is_punctuation(token[start]) and token[start] not in BRACKETS:
        start += 1
    while end > start and _is_punctuation(token[end - 1]) and token[end - 1] not in "])}>%":
        end -= 1
    return token[start:end]


def _is_annotation(token: str) -> bool:
    return len(token) >= 2 and token[0] in BRACKETS and token[-1] == BRACKETS[token[0]]


def spoken_word(token: str, *, source: str | None = None) -> SpokenWord | None:
    """Normalise one whitespace-free token; None if it is only punctuation (not a word)."""
    for ch in APOSTROPHES:
        token = token.replace(ch, "'")
    token = unicodedata.normalize("NFC", token)
    text = _trim(token)
    if not text:
        return None
    if _is_annotation(text) and text[0] != "(":
        return SpokenWord(text, (), noise=True)
    if text[0] == "(" and text[-1] == ")":
        text = text[1:-1] or text
    folded = _ascii_fold(text).lower()
    letters = [ch for ch in folded if ch.isalpha()]
    non_latin = [ch for ch in letters if not ("a" <= ch <= "z")]
    if non_latin:
        raise TranscriptError(
            f"word {text!r} is not English: {''.join(non_latin[:5])!r} is outside the Latin "
            "alphabet (the en-us aligner only knows English)",
            source,
        )
    parts: list[str] = []
    for chunk in re.split(_SPLIT, folded):
        chunk = chunk.strip("'")
        if not chunk:
            continue
        if chunk in SYMBOL_WORDS:
            parts.append(SYMBOL_WORDS[chunk])
            continue
        if any(ch.isdigit() for ch in chunk):
            parts += _digits_to_words(re.sub(r"[^0-9a-z'$%,.]", "", chunk))
            continue
        for sym, word in SYMBOL_WORDS.items():
            chunk = chunk.replace(sym, f" {word} ")
        parts += [p for p in re.sub(r"[^a-z' ]", "", chunk).split() if p.strip("'")]
    if not parts:
        if all(_is_punctuation(ch) for ch in text):
            return None
        raise TranscriptError(f"word {text!r} has no letters or digits to pronounce", source)
    return SpokenWord(text, tuple(p.strip("'") if p.count("'") == len(p) else p for p in parts))


def spoken_words(transcript: str, *, source: str | None = None) -> list[SpokenWord]:
    """All words of ``transcript`` in order (see the module docstring).

    Raises :class:`TranscriptError` (naming ``source``) when there is no word to align, for
    non-Latin script and for tokens with nothing pronounceable.
    """
    words = [w for tok in transcript.split() if (w := spoken_word(tok, source=source))]
    if not words:
        raise TranscriptError("transcript has no words to align", source)
    return words
