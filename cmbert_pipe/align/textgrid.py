"""Praat TextGrid files: read the long and the short text format, write the long one.

    >>> ali = read_textgrid("clip.TextGrid")            # schema.Alignment
    >>> write_textgrid(ali, "out/clip.TextGrid")          # words + phones tiers, atomic

Both text formats are the same sequence of values: quoted strings (a ``"`` inside is written
``""``, a string may span lines), numbers, and the flag ``<exists>``; the long format adds
``name =`` labels and ``[n]:`` indices around them. So the reader pulls out just those
values and walks them (Praat's own "ooTextFile" rules). Files saved by Praat as UTF-16 (with a
byte-order mark) are read too. Empty-label intervals are silences, never words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cmbert_pipe.errors import AlignmentError
from cmbert_pipe.io import atomic_write_text
from cmbert_pipe.schema import Alignment, PhoneInterval, WordInterval

WORDS_TIER = "words"
PHONES_TIER = "phones"
_TOKEN = re.compile(
    r'"((?:[^"]|"")*)"'  # a string; "" is an escaped quote
    r"|(<exists>|<absent>)"  # a flag
    r"|(?<![\w\[.])([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w\]])"  # a bare number
)


@dataclass(frozen=True)
class Tier:
    """One tier as read: ``intervals`` are (start_s, end_s, label); points have start == end."""

    name: str
    kind: str  # "IntervalTier" | "TextTier"
    intervals: tuple[tuple[float, float, str], ...]


def _decode(raw: bytes) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _tokens(text: str) -> list[str | float]:
    out: list[str | float] = []
    for m in _TOKEN.finditer(text):
        string, flag, number = m.groups()
        if string is not None:
            out.append(string.replace('""', '"'))
        elif flag is not None:
            out.append(flag)
        else:
            out.append(float(number))
    return out


def read_tiers(path: str | Path) -> tuple[float, float, list[Tier]]:
    """(xmin_s, xmax_s, tiers) of a TextGrid in long or short text format."""
    path = Path(path)
    try:
        text = _decode(path.read_bytes())
    except OSError as e:
        raise AlignmentError(f"cannot read TextGrid: {e.strerror or e}", path) from None
    tokens = _tokens(text)
    pos = 0

    def take(kind: type) -> str | float:
        nonlocal pos
        if pos >= len(tokens):
            raise AlignmentError("TextGrid ends early (truncated file?)", path)
        value = tokens[pos]
        pos += 1
        if kind is float and not isinstance(value, float):
            raise AlignmentError(f"TextGrid: expected a number, found {value!r}", path)
        if kind is str and not isinstance(value, str):
            raise AlignmentError(f"TextGrid: expected a string, found {value!r}", path)
        return value

    if len(tokens) < 2 or tokens[0] != "ooTextFile" or tokens[1] != "TextGrid":
        raise AlignmentError("not a Praat TextGrid text file (no 'ooTextFile'/'TextGrid')", path)
    pos = 2
    xmin, xmax = take(float), take(float)
    if take(str) != "<exists>":
        return float(xmin), float(xmax), []
    n_tiers = int(take(float))
    tiers: list[Tier] = []
    for _ in range(n_tiers):
        kind, name = str(take(str)), str(take(str))
        take(float), take(float)
        n_items = int(take(float))
        items: list[tuple[float, float, str]] = []
        for _ in range(n_items):
            if kind == "IntervalTier":
                start, end = float(take(float)), float(take(float))
            elif kind == "TextTier":
                start = end = float(take(float))
            else:
                raise AlignmentError(f"TextGrid: unknown tier class {kind!r}", path)
            items.append((start, end, str(take(str))))
        tiers.append(Tier(name, kind, tuple(items)))
    return float(xmin), float(xmax), tiers


def _find_tier(tiers: list[Tier], name: str) -> Tier | None:
    """The tier called ``name``, or MFA's multi-speaker ``"<speaker> - name"``."""
    for tier in tiers:
        if tier.kind == "IntervalTier" and tier.name.strip().lower() == name:
            return tier
    for tier in tiers:
        if tier.kind == "IntervalTier" and tier.name.strip().lower().endswith(f" - {name}"):
            return tier
    return None


def read_textgrid(path: str | Path, utterance_id: str | None = None) -> Alignment:
    """An :class:`Alignment` from a TextGrid's ``words`` (and ``phones``) tier.

    Intervals with an empty (or whitespace) label are silences and are left out.
    ``utterance_id`` defaults to the file's stem. Raises :class:`AlignmentError` naming the file
    when it cannot be read or has no ``words`` tier.
    """
    path = Path(path)
    _, xmax, tiers = read_tiers(path)
    words_tier = _find_tier(tiers, WORDS_TIER)
    if words_tier is None:
        names = ", ".join(repr(t.name) for t in tiers) or "none"
        raise AlignmentError(f"TextGrid has no 'words' tier (tiers: {names})", path)
    phones_tier = _find_tier(tiers, PHONES_TIER)
    words = tuple(
        WordInterval(lab.strip(), s, e) for s, e, lab in words_tier.intervals if lab.strip()
    )
    phones = tuple(
        PhoneInterval(lab.strip(), s, e)
        for s, e, lab in (phones_tier.intervals if phones_tier else ())
        if lab.strip()
    )
    return Alignment(utterance_id or path.stem, words, phones, duration_s=xmax)


def _fill(items: list[tuple[float, float, str]], xmax: float) -> list[tuple[float, float, str]]:
    """Intervals covering [0, xmax] exactly: gaps become empty-label intervals."""
    out: list[tuple[float, float, str]] = []
    t = 0.0
    for start, end, label in sorted(items, key=lambda i: i[0]):
        start, end = max(start, t), min(end, xmax)
        if end <= start:
            continue
        if start > t + 1e-9:
            out.append((t, start, ""))
        out.append((start, end, label))
        t = end
    if xmax > t + 1e-9 or not out:
        out.append((t, xmax, ""))
    return out


def _num(x: float) -> str:
    return repr(round(float(x), 6))


def _quote(label: str) -> str:
    return '"' + label.replace('"', '""') + '"'


def textgrid_text(alignment: Alignment) -> str:
    """The long-format TextGrid text for ``alignment`` (words tier, then phones tier)."""
    xmax = max(
        [alignment.duration_s]
        + [w.end_s for w in alignment.words]
        + [p.end_s for p in alignment.phones]
    )
    tiers = [
        (WORDS_TIER, _fill([(w.start_s, w.end_s, w.word) for w in alignment.words], xmax)),
        (PHONES_TIER, _fill([(p.start_s, p.end_s, p.phone) for p in alignment.phones], xmax)),
    ]
    lines = [
        'File type = "ooTextFile"',
        'Object class = "TextGrid"',
        "",
        "xmin = 0",
        f"xmax = {_num(xmax)}",
        "tiers? <exists>",
        f"size = {len(tiers)}",
        "item []:",
    ]
    for i, (name, intervals) in enumerate(tiers, start=1):
        lines += [
            f"    item [{i}]:",
            '        class = "IntervalTier"',
            f"        name = {_quote(name)}",
            "        xmin = 0",
            f"        xmax = {_num(xmax)}",
            f"        intervals: size = {len(intervals)}",
        ]
        for j, (start, end, label) in enumerate(intervals, start=1):
            lines += [
                f"        intervals [{j}]:",
                f"            xmin = {_num(start)}",
                f"            xmax = {_num(end)}",
                f"            text = {_quote(label)}",
            ]
    return "\n".join(lines) + "\n"


def write_textgrid(alignment: Alignment, path: str | Path) -> Path:
    """Write ``alignment`` as a long-format TextGrid (atomically); returns the path."""
    path = Path(path)
    atomic_write_text(path, textgrid_text(alignment))
    return path
