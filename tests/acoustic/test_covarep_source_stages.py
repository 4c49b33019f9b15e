"""Per-stage tests of COVAREP-74's source stages (polarity, SRH, GCI, IAIF, voice quality) against the reference intermediates of the original
COVAREP (Octave) in ../shared/data/covarep-ref/<name>_intermediate.mat (docs/covarep74.md §15)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import soundfile as sf

from cmbert_pipe.acoustic.covarep.gci import sedreams, select_gcis
from cmbert_pipe.acoustic.covarep.iaif import iaif_gci
from cmbert_pipe.acoustic.covarep.lpres import lpc_residual
from cmbert_pipe.acoustic.covarep.polarity import detect_polarity
from cmbert_pipe.acoustic.covarep.srh import f0_median_voiced, pitch_srh
from cmbert_pipe.acoustic.covarep.voicequality import vq_params
from cmbert_pipe.acoustic.covarep.wavelets import mdq, peak_slope

FILES = ["arctic_a0007", "tts_a", "ravdess_03-01-05-01-01-01-04"]


class Stages:
    """Every source stage run once on one reference WAV, with the reference intermediates."""

    def __init__(self, folder, name):
        x, self.fs = sf.read(folder / f"{name}.wav")
        self.ref = scipy.io.loadmat(folder / f"{name}_intermediate.mat")
        res = lpc_residual(x)
        self.polarity, _, _ = detect_polarity(x, self.fs, res18=res)
        self.x = self.polarity * x
        self.res18 = self.polarity * res
        self.srh = pitch_srh(self.x, self.fs)
        self.f0med = f0_median_voiced(self.srh.f0_hz, self.srh.vuv)
        raw = sedreams(self.x, self.fs, self.f0med, self.res18)
        self.gcis = select_gcis(raw, self.srh.centres, self.srh.vuv, self.x.size)
        self.g, self.dg = iaif_gci(self.x, self.fs, self.gcis)
        self.vq = vq_params(self.g, self.dg, self.fs, self.gcis)


@pytest.fixture(scope="module", params=FILES)
def stages(request, shared_data):
    return Stages(shared_data / "covarep-ref", request.param)


def test_polarity(stages):
    assert stages.polarity == stages.ref["polarity"][0, 0]


def test_srh_f0_vuv_time_exact(stages):
    ref = stages.ref
    assert np.array_equal(stages.srh.f0_hz, ref["srh_f0"][0])
    assert np.array_equal(stages.srh.vuv, ref["srh_vuv"][0])
    assert np.allclose(stages.srh.time_s, ref["srh_time"][0], rtol=0, atol=1e-12)
    assert stages.f0med == ref["F0med"][0, 0]


def test_gci_samples_exact(stages):
    assert np.array_equal(stages.gcis, stages.ref["GCI_samples"][0].astype(int))


@pytest.mark.parametrize("key", ["NAQ", "QOQ", "H1H2", "PSP", "HRF"])
def test_voice_quality_per_gci(stages, key):
    ref = stages.ref[key]
    mine = {"NAQ": stages.vq.naq, "QOQ": stages.vq.qoq, "H1H2": stages.vq.h1h2,
            "PSP": stages.vq.psp, "HRF": stages.vq.hrf}[key]
    assert np.allclose(stages.vq.abscissa / stages.fs, ref[:, 0], rtol=0, atol=1e-9)
    assert np.allclose(mine, ref[:, 1], rtol=1e-6, atol=1e-12)


def test_mdq_per_gci(stages):
    x_abs, values = mdq(stages.res18, stages.fs, stages.gcis)
    ref = stages.ref["MDQ"]
    assert np.allclose(x_abs / stages.fs, ref[:, 0], rtol=0, atol=1e-9)
    assert np.allclose(values, ref[:, 1], rtol=0, atol=1e-12)


def test_peak_slope_per_frame(stages):
    x_abs, values = peak_slope(stages.x, stages.fs)
    ref = stages.ref["PS"]
    assert np.allclose(x_abs / stages.fs, ref[:, 0], rtol=0, atol=1e-9)
    assert np.allclose(values, ref[:, 1], rtol=0, atol=1e-10)
