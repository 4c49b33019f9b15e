#!/usr/bin/env python3
"""Regenerate the embedded demo corpus ``assets/demo/`` with espeak-ng (speech this project
synthesises itself; no recordings from anywhere else).

    apt-get install -y espeak-ng            # the synthesiser (Debian/Ubuntu package)
    python assets/recreate_demo.py          # rewrites assets/demo/*.flac and manifest.csv

Each sentence is spoken by one of 15 espeak-ng voices (male and female variants), with prosody
that follows its sentiment: positive sentences higher, wider in pitch and quicker; negative
ones lower, flatter and slower; neutral ones in between. Labels are sentiment in [-3, 3] (MOSI convention): the
voice settings never change a label, the words and the intended emotion do. Audio is written
as 16 kHz mono 8-bit FLAC (synthetic speech needs no more, and it halves the size).
The split is by sentence (each sentence appears in one split). The voice of each sentence was
picked (from a rotation over the voices) among those whose rendering the offline pocketsphinx
aligner places word by word: synthetic speech trips the en-us acoustic model on some
voice/sentence pairs, and a demo clip that cannot be aligned would only demonstrate a failure.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

OUT_DIR = Path(__file__).resolve().parent / "demo"
SAMPLE_RATE = 16_000  # Hz, what the pipeline works at

# (id, sentence, label in [-3, 3], split, espeak-ng voice+variant)
SENTENCES: tuple[tuple[str, str, float, str, str], ...] = (
    ("pos01", "I really loved this movie", 3.0, "train", "en-us+m3"),
    ("pos02", "The acting was wonderful and funny", 2.0, "train", "en-us+m1"),
    ("pos03", "What a great and happy ending", 2.0, "train", "en-us+m1"),
    ("pos04", "I enjoyed every minute of it", 2.0, "train", "en-us+f4"),
    ("pos05", "The music was beautiful", 2.0, "train", "en-us+m4"),
    ("pos06", "This is the best film of the year", 3.0, "train", "en-us+f5"),
    ("pos07", "It made me smile all day", 2.0, "dev", "en-us+m2"),
    ("pos08", "The story was sweet and clever", 2.0, "dev", "en-us+f1"),
    ("pos09", "I would gladly watch it again", 2.0, "test", "en-us+m5"),
    ("pos10", "A truly good and lovely film", 3.0, "test", "en-us"),
    ("neg01", "I hated this movie", -3.0, "train", "en-us+m6"),
    ("neg02", "The acting was terrible and boring", -2.0, "train", "en+f2"),
    ("neg03", "What a sad and awful ending", -2.0, "train", "en-us+m7"),
    ("neg04", "I wasted every minute of it", -2.0, "train", "en-us+f2"),
    ("neg05", "The music was annoying", -2.0, "train", "en-us+f3"),
    ("neg06", "This is the worst film of the year", -3.0, "train", "en-us+m3"),
    ("neg07", "It made me angry all day", -2.0, "dev", "en-us+f2"),
    ("neg08", "The story was dull and stupid", -2.0, "dev", "en-us+m1"),
    ("neg09", "I would never watch it again", -2.0, "test", "en-us+f4"),
    ("neg10", "A truly bad and ugly film", -3.0, "test", "en-us"),
    ("neu01", "The movie is two hours long", 0.0, "train", "en-us+m1"),
    ("neu02", "It was shown on a Tuesday", 0.0, "train", "en-us+m2"),
    ("neu03", "The film is set in a city", 0.0, "train", "en-us+m5"),
    ("neu04", "There are four main actors", 0.0, "train", "en-us+m2"),
    ("neu05", "I saw it with my brother", 0.0, "dev", "en-us"),
    ("neu06", "The ticket was paid at the door", 0.0, "test", "en+f2"),
)

# Prosody by sentiment: (pitch 0-99, pitch range in % of the voice's own, words per minute)
PROSODY = {
    "positive": (70, 90, 185),
    "neutral": (50, 50, 160),
    "negative": (30, 15, 130),
}


def polarity(label: float) -> str:
    return "positive" if label > 0 else "negative" if label < 0 else "neutral"


def synthesise(text: str, voice: str, pitch: int, pitch_range: int, wpm: int) -> np.ndarray:
    """espeak-ng -> (N,) float32 at SAMPLE_RATE, leading/trailing near-silence trimmed to 150 ms.

    Pitch and rate go on the command line; the pitch range through SSML ``<prosody range>``.
    """
    ssml = f'<speak><prosody range="{pitch_range}%">{text}</prosody></speak>'
    cmd = ["espeak-ng", "-m", "-v", voice, "-p", str(pitch), "-s", str(wpm), "--stdout", ssml]
    raw = subprocess.run(cmd, check=True, capture_output=True).stdout
    wave, sr = sf.read(io.BytesIO(raw), dtype="float32")
    wave = soxr.resample(wave, sr, SAMPLE_RATE, quality="VHQ").astype(np.float32)
    peak_frac = 0.02 * float(np.max(np.abs(wave)))
    voiced = np.flatnonzero(np.abs(wave) > peak_frac)
    pad = int(0.15 * SAMPLE_RATE)
    start, end = max(0, voiced[0] - pad), min(len(wave), voiced[-1] + pad)
    wave = wave[start:end]
    return (0.8 * wave / float(np.max(np.abs(wave)))).astype(np.float32)


def main() -> int:
    if shutil.which("espeak-ng") is None:
        print("espeak-ng not found: apt-get install -y espeak-ng", file=sys.stderr)
        return 1
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    rows = []
    for uid, text, label, split, voice in SENTENCES:
        pitch, pitch_range, wpm = PROSODY[polarity(label)]
        wave = synthesise(text, voice, pitch, pitch_range, wpm)
        sf.write(OUT_DIR / f"{uid}.flac", wave, SAMPLE_RATE, subtype="PCM_S8", format="FLAC")
        rows.append({"id": uid, "audio": f"{uid}.flac", "transcript": text,
                     "label": f"{label:g}", "split": split, "speaker": voice})
    with open(OUT_DIR / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    total_kb = sum(p.stat().st_size for p in OUT_DIR.glob("*.flac")) / 1024
    print(f"wrote {len(rows)} clips ({total_kb:.0f} KB) and manifest.csv to {OUT_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
