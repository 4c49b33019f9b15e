"""Long recordings: real recordings made of one speaker's clips end to end, aligned piece by
piece (cut at pauses), against each source clip aligned on its own; CPU time and peak memory.

    python benchmarks/align_long.py                # 5 recordings, segmented alignment
    python benchmarks/align_long.py --one-shot     # also the one-pass alignment of each

The recordings: each of RAVDESS actors 01-04 (all 60 clips of the actor, ~220 s, acted
emotional speech) and the three read-speech files of one speaker in the MFA test corpus
(``../shared/data/mfa-test``: acoustic_corpus, cold_corpus, cold_corpus3; 77 s), clips joined
without gaps, transcripts in the same order; a clip refused on its own has no reference and is
left out. The three MFA files, although read by one speaker, were not recorded alike: joined,
they defeat the one-pass alignment as well (no path), so that row shows what happens to a
recording whose channel changes at a join. The
reference is each clip aligned alone (what a user with the pieces would get), its times shifted
by where the clip starts. Each alignment of a whole recording runs in its own child process, so
its CPU time and peak resident memory (``wait4``) are its own. Writes ``results/align_long.md``
and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from _results import markdown_table, write_result  # noqa: E402
from align_speed import DATA, ravdess_utterances  # noqa: E402

from cmbert_pipe.align import get_aligner  # noqa: E402
from cmbert_pipe.audio import load_audio  # noqa: E402
from cmbert_pipe.corpus import read_transcript  # noqa: E402
from cmbert_pipe.errors import CmbertError  # noqa: E402
from cmbert_pipe.schema import SAMPLE_RATE, Utterance  # noqa: E402

MFA_FILES = ("acoustic_corpus", "cold_corpus", "cold_corpus3")
ACTORS = ("01", "02", "03", "04")
MAX_DURATION_S = 3600.0


def recordings() -> dict[str, list[Utterance]]:
    """Name -> the clips of one recording, in order."""
    mfa = DATA / "mfa-test"
    out = {f"RAVDESS actor {a}": [u for u in ravdess_utterances(1) if u.speaker == a]
           for a in ACTORS}
    out["MFA read speech"] = [Utterance(f, mfa / "wav" / f"{f}.wav",
                                        read_transcript(mfa / "lab" / f"{f}.lab"))
                              for f in MFA_FILES]
    return out


def child(wav: str, txt: str, out: str, one_shot: bool) -> None:
    """Align the whole recording in this process; write its words and CPU seconds."""
    import time

    options = {"max_duration_s": MAX_DURATION_S}
    if one_shot:
        options["segment_above_s"] = MAX_DURATION_S  # never cut
    aligner = get_aligner("pocketsphinx", **options)
    wave = load_audio(wav)
    c0 = time.process_time()
    try:
        ali = aligner.align(Utterance("long", Path(wav), Path(txt).read_text()), wave=wave)
    except CmbertError as e:
        Path(out).write_text(json.dumps({"error": e.reason, "cpu_s": time.process_time() - c0}))
        return
    Path(out).write_text(json.dumps({
        "cpu_s": time.process_time() - c0, "method": ali.method, "quality": ali.quality,
        "words": [[w.word, w.start_s, w.end_s] for w in ali.words]}))


def run_child(wav: Path, txt: Path, one_shot: bool, work: Path) -> dict:
    out = work / f"{'one-shot' if one_shot else 'segmented'}.json"
    cmd = [sys.executable, __file__, "--child", str(wav), str(txt), str(out)]
    proc = subprocess.Popen(cmd + (["--one-shot"] if one_shot else []))
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"child failed ({status}): {' '.join(cmd)}")
    result = json.loads(out.read_text())
    result["peak_rss_mb"] = usage.ru_maxrss / 1024.0  # KiB on Linux
    return result


def agreement(reference: list[tuple[str, float, float]], words: list) -> dict:
    err = np.array([[abs(a - w[1]), abs(b - w[2])]
                    for (_, a, b), w in zip(reference, words, strict=True)]).ravel()  # (2W,)
    return {f"within_{ms}ms": float((err <= ms / 1000).mean()) for ms in (10, 20, 50)} | {
        "mean_ms": float(err.mean() * 1000), "max_ms": float(err.max() * 1000)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one-shot", action="store_true",
                        help="also align each whole recording in one pass (~2 GB)")
    parser.add_argument("--child", nargs=3, metavar=("WAV", "TXT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, one_shot=args.one_shot)
        return 0
    aligner = get_aligner("pocketsphinx")
    rows, data = [], {}
    for name, clips in recordings().items():
        reference: list[tuple[str, float, float]] = []
        offset_s, utts, waves = 0.0, [], []
        for utt in clips:
            wave = load_audio(utt.audio)
            try:
                ali = aligner.align(utt, wave=wave)
            except CmbertError as e:  # a clip refused on its own has no reference: left out
                print(f"left out {utt.id}: {e.reason}", file=sys.stderr)
                continue
            utts.append(utt)
            waves.append(wave)
            reference += [(w.word, w.start_s + offset_s, w.end_s + offset_s) for w in ali.words]
            offset_s += wave.shape[0] / SAMPLE_RATE
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            wav, txt = work / "long.wav", work / "long.txt"
            sf.write(wav, np.concatenate(waves), SAMPLE_RATE, subtype="PCM_16")
            txt.write_text(" ".join(u.transcript for u in utts) + "\n")
            runs = {"segmented": run_child(wav, txt, False, work)}
            if args.one_shot:
                runs["one pass"] = run_child(wav, txt, True, work)
        data[name] = {"duration_s": offset_s, "n_words": len(reference), "clips": len(utts),
                      "left_out": len(clips) - len(utts)}
        for how, r in runs.items():
            if "error" in r:
                rows.append([name, f"{offset_s:.0f}", len(utts), how, "-", "-", "refused",
                             "-", "-", "-", "-", "-", "-"])
                data[name][how] = r
                continue
            assert [w[0] for w in r["words"]] == [w for w, _, _ in reference]
            agree = agreement(reference, r["words"])
            rows.append([name, f"{offset_s:.0f}", len(utts), how,
                         f"{offset_s / r['cpu_s']:.1f}", f"{r['peak_rss_mb']:.0f}",
                         r["method"], f"{r['quality']:.3f}",
                         *(f"{100 * agree[f'within_{ms}ms']:.1f}" for ms in (10, 20, 50)),
                         f"{agree['mean_ms']:.1f}", f"{agree['max_ms']:.0f}"])
            data[name][how] = {k: v for k, v in r.items() if k != "words"} | agree
    table = markdown_table(["recording", "s", "clips", "alignment", "audio s / CPU s",
                            "peak RSS MB", "method", "quality", "% ≤10 ms", "% ≤20 ms",
                            "% ≤50 ms", "mean ms", "max ms"], rows)
    body = ("Each recording is one speaker's clips end to end. Word boundaries (start and end "
            "of every word) compared with each clip aligned on its own, shifted to where it "
            "starts.\n\n" + table
            + "\nPeak RSS is the child process that aligned the whole recording (model, audio "
              "and search together).\n")
    print(body)
    path = write_result("align_long", body, data, title="Long recordings: cut at pauses")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
