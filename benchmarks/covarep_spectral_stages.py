"""Speed and fidelity of COVAREP-74 spectral stages (sinusoidal analysis, Rd, MCEP, HMPD) on the reference WAVs (docs/covarep74.md §9–13, §15).

    OMP_NUM_THREADS=1 nice -n 10 /work/venv/bin/python benchmarks/covarep_spectral_stages.py [NAME ...]

For each reference file, with the SRH frames and polarity of the reference intermediates as
inputs: CPU seconds (process time, one thread) per second of audio for sinusoidal analysis,
Rd MSP, MCEP (True Envelope) and HMPD and creak, and the largest deviation of each stream from
the Octave intermediates. CPU time is measured in this process; the stages are run twice and the
second run is reported (warm caches, no import cost). A final TOTAL row sums all files.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import scipy.io as sio
import soundfile as sf

from cmbert_pipe.acoustic.covarep.creak import creak_posterior
from cmbert_pipe.acoustic.covarep.envelope import mcep_frames
from cmbert_pipe.acoustic.covarep.hmpd import hmpd_features
from cmbert_pipe.acoustic.covarep.lpres import lpc_residual
from cmbert_pipe.acoustic.covarep.mcompat import OctaveRandom
from cmbert_pipe.acoustic.covarep.rd import rd_msp
from cmbert_pipe.acoustic.covarep.sinusoidal import harmonic_peak_picking, mround, wrap

REF = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "covarep-ref"
STAGES = ("sinusoidal", "rd", "mcep", "hmpd", "creak")


def run(name: str) -> tuple[float, dict, dict]:
    x, fs = sf.read(REF / f"{name}.wav", dtype="float64")
    m = sio.loadmat(REF / f"{name}_intermediate.mat")
    x = m["polarity"].item() * x
    centres, f0 = mround(m["srh_time"].ravel() * fs), m["srh_f0"].ravel()
    res18 = lpc_residual(x, 400, 80, 18)
    cpu: dict[str, float] = {}
    for _ in range(2):
        t = time.process_time()
        fr = harmonic_peak_picking(x, fs, centres, f0)
        cpu["sinusoidal"] = time.process_time() - t
        t = time.process_time()
        rds = rd_msp(fr, fs)
        cpu["rd"] = time.process_time() - t
        t = time.process_time()
        mc = mcep_frames(fr, fs)
        cpu["mcep"] = time.process_time() - t
        t = time.process_time()
        _, pdm, pdd = hmpd_features(fr, fs, OctaveRandom(1))
        cpu["hmpd"] = time.process_time() - t
        t = time.process_time()
        creak_posterior(x, fs, res18, None, m["srh_vuv"].ravel())
        cpu["creak"] = time.process_time() - t
    d_rd = np.abs(rds[:, 1] - m["rds"][:, 1])
    dev = {
        "MCEP max": np.abs(mc - m["MCEP_frames"]).max(),
        "Rd rows<=1e-9": np.mean(d_rd <= 1e-9),
        "Rd max": d_rd.max(),
        "Rd_conf max": np.abs(rds[:, 2] - m["rds"][:, 2]).max(),
        "HMPDM max": np.abs(wrap(pdm - m["HMPDM_raw"])).max(),
        "HMPDD int. max": np.abs(pdd - m["HMPDD_raw"])[18:-18].max(),
    }
    return x.size / fs, cpu, dev


def main(argv: list[str]) -> int:
    names = argv or sorted(p.stem for p in REF.glob("*.wav"))
    total_s, total = 0.0, dict.fromkeys(STAGES, 0.0)
    head = " ".join(f"{s:>10s}" for s in STAGES)
    print(f"{'file':30s} {'audio_s':>7s} {head} {'sum':>6s}   (CPU s per audio s)")
    devs = []
    for name in names:
        dur, cpu, dev = run(name)
        total_s += dur
        for s in STAGES:
            total[s] += cpu[s]
        devs.append((name, dev))
        cells = " ".join(f"{cpu[s] / dur:10.4f}" for s in STAGES)
        print(f"{name[:30]:30s} {dur:7.2f} {cells} {sum(cpu.values()) / dur:6.3f}")
    cells = " ".join(f"{total[s] / total_s:10.4f}" for s in STAGES)
    print(f"{'TOTAL':30s} {total_s:7.2f} {cells} {sum(total.values()) / total_s:6.3f}")
    print()
    keys = list(devs[0][1])
    print(f"{'file':30s} " + " ".join(f"{k:>14s}" for k in keys))
    for name, dev in devs:
        print(f"{name[:30]:30s} " + " ".join(f"{dev[k]:14.3g}" for k in keys))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
