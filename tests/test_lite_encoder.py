"""model/lite.py: the transformers-free BERT encoder and tokenizer used to load bundles for
prediction give what ``transformers`` gives (outputs, layer-by-layer fusion, token ids and
``word_ids``), and loading a bundle that way imports no ``transformers``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cmbert_pipe.model.lite import BertEncoder, LiteTokenizer, supports

REPO = Path(__file__).resolve().parents[1]


def _hf_and_lite(**overrides):
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=40, **overrides)
    torch.manual_seed(0)
    cfg._attn_implementation = "eager"
    hf = BertModel(cfg).eval()
    lite = BertEncoder(cfg.to_dict()).eval()
    result = lite.load_state_dict(hf.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert [k for k in result.missing_keys if not k.endswith("position_ids")] == []
    return hf, lite


def test_encoder_matches_transformers_bert_with_padding():
    hf, lite = _hf_and_lite()
    ids = torch.randint(1, 120, (3, 17))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    mask[2, 3:] = 0
    types = torch.zeros_like(ids)
    types[0, 8:] = 1
    with torch.no_grad():
        a = hf(input_ids=ids, attention_mask=mask, token_type_ids=types)
        b = lite(input_ids=ids, attention_mask=mask, token_type_ids=types)
    torch.testing.assert_close(b.last_hidden_state, a.last_hidden_state, rtol=0, atol=1e-5)
    torch.testing.assert_close(b.pooler_output, a.pooler_output, rtol=0, atol=1e-5)
    # a different input must change the output (the comparison is not vacuous)
    with torch.no_grad():
        c = lite(input_ids=ids.flip(1), attention_mask=mask, token_type_ids=types)
    assert (c.last_hidden_state - b.last_hidden_state).abs().max() > 1e-2


def test_layer_by_layer_fusion_runs_the_same_on_both():
    from cmbert_pipe.model.magbert import encode_with_shift

    hf, lite = _hf_and_lite()
    ids = torch.randint(1, 120, (2, 11))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    types = torch.zeros_like(ids)

    def shift(z, y, token_mask):
        return 0.1 * torch.tanh(y), {}

    with torch.no_grad():
        a, _ = encode_with_shift(hf, ids, mask, types, 2, shift)
        b, _ = encode_with_shift(lite, ids, mask, types, 2, shift)
    torch.testing.assert_close(b, a, rtol=0, atol=1e-5)


def test_unsupported_configs_fall_back():
    assert supports({"model_type": "bert", "hidden_act": "gelu"})
    assert not supports({"model_type": "roberta"})
    assert not supports({"model_type": "bert", "position_embedding_type": "relative_key"})
    with pytest.raises(ValueError):
        BertEncoder({"model_type": "distilbert"})


def test_tokenizer_matches_autotokenizer():
    from transformers import AutoTokenizer

    from cmbert_pipe.model.base import default_encoder_path

    path = default_encoder_path()
    hf = AutoTokenizer.from_pretrained(path, use_fast=True)
    lite = LiteTokenizer(path)
    batch = [["The", "acting", "was", "wonderful"], ["naïve", "café", "I'm", "x", "Ünïcode"] * 15,
             [""], ["supercalifragilistic", "2.5", "--", "o'clock"]]
    for max_len in (8, 50):
        a = hf(batch, is_split_into_words=True, truncation=True, max_length=max_len,
               padding="longest", return_tensors="np")
        b = lite(batch, is_split_into_words=True, truncation=True, max_length=max_len,
                 padding="longest", return_tensors="np")
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            assert (a[key] == b[key]).all(), key
        for i in range(len(batch)):
            assert a.word_ids(i) == b.word_ids(i)
    one = lite([batch[0]], is_split_into_words=True, truncation=True, max_length=50)
    assert one.word_ids(0) == hf([batch[0]], is_split_into_words=True, truncation=True,
                                 max_length=50).word_ids(0)


def test_lite_bundle_load_imports_no_transformers(tmp_path):
    """Save a real bundle (embedded MiniLM), load it lite in a fresh process: same score as the
    transformers build, and ``transformers`` never imported."""
    from cmbert_pipe.model import ModelConfig, build_model
    from cmbert_pipe.model.bundle import load_bundle, save_bundle
    from cmbert_pipe.model.inputs import AudioStats, load_tokenizer, prepare_batch

    torch.manual_seed(0)
    config = ModelConfig(model="cmbert", audio_dim=4, cls_audio="mean")
    model = build_model(config).eval()
    stats = AudioStats.identity(4)
    save_bundle(tmp_path / "m", model, load_tokenizer(""), stats, {}, {})
    full = load_bundle(tmp_path / "m")
    items = [(("a", "lovely", "film"), [[0.1, 0.2, 0.3, 0.4]] * 3)]
    with torch.no_grad():
        want = float(full.model(**prepare_batch(full.tokenizer, items, full.config, stats)).pred[0])
    code = (
        "import sys, torch\n"
        "from cmbert_pipe.model.bundle import load_bundle\n"
        "from cmbert_pipe.model.inputs import AudioStats, prepare_batch\n"
        f"b = load_bundle({str(tmp_path / 'm')!r}, lite=True)\n"
        "items = [(('a', 'lovely', 'film'), [[0.1, 0.2, 0.3, 0.4]] * 3)]\n"
        "with torch.no_grad():\n"
        "    s = float(b.model(**prepare_batch(b.tokenizer, items, b.config, b.audio_stats)).pred[0])\n"
        "print(s, any(m == 'transformers' or m.startswith('transformers.') for m in sys.modules))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    assert out[1] == "False"
    assert float(out[0]) == pytest.approx(want, abs=1e-5)
