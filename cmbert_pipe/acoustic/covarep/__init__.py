"""COVAREP-74: a numpy/scipy re-implementation of COVAREP's 74-column acoustic feature vector.

The column set is the one CMU-MOSI/MOSEI distribute and CM-BERT was published on (F0, VUV, NAQ,
QOQ, H1H2, PSP, MDQ, peakSlope, Rd, Rd_conf, creak, MCEP_0-24, HMPDM_0-24, HMPDD_0-12), computed
as COVAREP's ``COVAREP_feature_extraction`` does (Degottex, Kane, Drugman, Raitio & Scherer 2014,
"COVAREP - A collaborative voice analysis repository for speech technologies"), following the
specification summarised in docs/covarep74.md. This package's ``__init__`` holds the column
names and the version (cheap to import); :mod:`.pipeline` runs the stages.

    >>> from cmbert_pipe.acoustic.covarep.pipeline import extract_covarep74
    >>> frames = extract_covarep74(wave, 16000)   # (K, 74) float32, rows at 5 ms + 10 ms * k
"""

from __future__ import annotations

COVAREP74_VERSION = "1.0.2"  # bump whenever the numbers change: it goes into cache keys

COVAREP74_COLUMNS: tuple[str, ...] = (
    ("F0", "VUV", "NAQ", "QOQ", "H1H2", "PSP", "MDQ", "peakSlope", "Rd", "Rd_conf", "creak")
    + tuple(f"MCEP_{i}" for i in range(25))
    + tuple(f"HMPDM_{i}" for i in range(25))
    + tuple(f"HMPDD_{i}" for i in range(13))
)



__all__ = ["COVAREP74_COLUMNS", "COVAREP74_VERSION"]
