"""Long recordings: cut a recording and its transcript into pieces at pauses, so that each piece
is aligned on its own in bounded memory (a one-pass alignment of 643 s took 5.2 GB).

    >>> pieces = list(plan_pieces(duration_s, n_words, spot, window_s=40.0))
    >>> [(p.start_s, p.end_s, p.first_word, p.end_word) for p in pieces]

How (the anchor-and-split idea of long-audio alignment: Moreno, Joerg, Van Thong & Glickman,
"A recursive algorithm for the forced alignment of very long audio segments", ICSLP 1998): walk
through the audio one window at a time. In the window ``[t0, t0 + window_s]`` a word pass whose
grammar accepts any prefix of the words not yet placed (``spot``) finds the words spoken there;
the words ending before the window's last ``margin_s`` are trusted (the search is cut off at
the window's end, so the last words are not). The cut goes in the middle of the last pause of
at least ``min_pause_s`` between two trusted words (the longest gap between them when there is
no such pause); the next window starts at the cut, with the next word. Each piece is then
aligned like a short recording.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

#: (t0_s, t1_s, first_word) -> the words placed in ``[t0_s, t1_s]`` in order, from
#: ``first_word`` on, as (word index, start_s, end_s) in seconds of the whole recording.
Spot = Callable[[float, float, int], list[tuple[int, float, float]]]


class SegmentationError(ValueError):
    """No transcript word could be placed in a window of the recording."""


@dataclass(frozen=True)
class Piece:
    """A stretch ``[start_s, end_s)`` of the recording and its words ``[first_word, end_word)``."""

    start_s: float
    end_s: float
    first_word: int
    end_word: int


def choose_cut(placed: list[tuple[int, float, float]], limit_s: float,
               min_pause_s: float) -> tuple[int, float] | None:
    """(position in ``placed`` of the last word before the cut, cut time in s), or None when no
    word ends by ``limit_s``. The cut follows the last trusted word (ending by ``limit_s``)
    that has a gap of ``min_pause_s`` or more to the next placed word, else the one with the
    longest gap; it lies in the middle of that gap (after the last placed word: at most
    ``min_pause_s / 2`` after its end)."""
    trusted = [k for k, (_, _, end_s) in enumerate(placed) if end_s <= limit_s]
    if not trusted:
        return None
    gaps = [placed[k + 1][1] - placed[k][2] if k + 1 < len(placed)
            else min(limit_s - placed[k][2], min_pause_s) for k in trusted]
    long_enough = [(k, g) for k, g in zip(trusted, gaps, strict=True) if g >= min_pause_s]
    k, gap = long_enough[-1] if long_enough else max(zip(trusted, gaps, strict=True),
                                                      key=lambda kg: (kg[1], kg[0]))
    return k, round(placed[k][2] + max(gap, 0.0) / 2, 3)


def plan_pieces(duration_s: float, n_words: int, spot: Spot, *, start_s: float = 0.0,
                first_word: int = 0, window_s: float = 40.0, margin_s: float = 5.0,
                min_pause_s: float = 0.25, max_widen: int = 2) -> Iterator[Piece]:
    """Pieces of at most ``window_s`` (times ``2 ** max_widen`` where a window held no word)
    covering the recording from ``start_s`` and the transcript from ``first_word``, in order
    (see the module docstring). A generator: each piece is planned when it is asked for, so
    a caller can stop at the first piece that fails.

    Raises :class:`SegmentationError` when a window widened ``max_widen`` times still holds
    no transcript word."""
    t0, w0 = start_s, first_word
    while w0 < n_words and duration_s - t0 > window_s:
        width, cut, placed = window_s, None, []
        for _ in range(max_widen + 1):
            t1 = min(t0 + width, duration_s)
            placed = spot(t0, t1, w0)
            limit = t1 if t1 >= duration_s else t1 - margin_s
            cut = choose_cut(placed, limit, min_pause_s)
            if cut is not None or t1 >= duration_s:
                break
            width *= 2
        if cut is None:
            raise SegmentationError(
                f"no word of the transcript (from word {w0 + 1} on) found between "
                f"{t0:.1f} s and {t0 + width:.1f} s")
        k, cut_s = cut
        end_word = placed[k][0] + 1
        if end_word >= n_words:
            break  # every word placed: the rest of the recording is the last piece
        yield Piece(t0, cut_s, w0, end_word)
        t0, w0 = cut_s, end_word
    yield Piece(t0, duration_s, w0, n_words)
