"""cmbert-pipe: audio + transcript -> sentiment with CM-BERT.

Stages (each a module or sub-package, depending downward only):
``cli`` -> ``predict`` / ``train`` -> ``model``, ``cache`` -> ``acoustic``, ``align`` -> ``audio``.
Records that cross a stage boundary live in :mod:`cmbert_pipe.schema`.
"""

__version__ = "0.1.0"
