"""CM-BERT maths on small hand-checkable tensors, the word-piece ↔ word audio mapping, the
audio-invariance of ``cls_audio="zero"``, parameter groups, schedule and EMA.

Encoders here are real ``BertModel`` instances: a tiny randomly initialised one where only the
head's maths is under test, the embedded MiniLM where the tokenizer matters."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cmbert_pipe.errors import ConfigError, ModelError
from cmbert_pipe.model import MODELS, ModelConfig, build_model
from cmbert_pipe.model.cmbert import masked_multimodal_attention, scale_paper, scale_reference
from cmbert_pipe.model.ema import EMA
from cmbert_pipe.model.inputs import AudioStats, load_tokenizer, prepare_batch, word_piece_audio
from cmbert_pipe.train import linear_warmup_decay

torch.set_num_threads(2)


def tiny_encoder(vocab_size: int = 30522):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    return BertModel(cfg, add_pooling_layer=False)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("")


@pytest.fixture(scope="module")
def covarep_words(shared_data) -> list[np.ndarray]:
    """Real 74-dim COVAREP vectors: reference frames of two RAVDESS clips with the same words,
    averaged over six equal spans (one per word of "Kids are talking by the door")."""
    out = []
    for name in ("ravdess_03-01-03-01-01-01-02.csv", "ravdess_03-01-04-01-01-01-03.csv"):
        frames = np.loadtxt(shared_data / "covarep-ref" / name, delimiter=",", skiprows=1)
        spans = np.array_split(frames, 6)
        out.append(np.stack([s.mean(axis=0) for s in spans]).astype(np.float32))  # (6, 74)
    return out


# -- masked multimodal attention ---------------------------------------------------------------
def test_attention_matches_hand_computation():
    t = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (1, 2, 2): alpha_t = I
    a = torch.tensor([[[0.0, 0.0], [0.0, 2.0]]])  # beta_a = [[0, 0], [0, 4]]
    mask = torch.tensor([[True, True]])
    one, zero = torch.tensor(1.0), torch.tensor(0.0)
    w_m, alpha, beta = masked_multimodal_attention(t, a, mask, one, one, zero)
    assert torch.equal(alpha[0], torch.eye(2))
    assert torch.equal(beta[0], torch.tensor([[0.0, 0.0], [0.0, 4.0]]))
    e = math.e
    expected = torch.tensor([[e / (e + 1), 1 / (e + 1)], [1 / (1 + e**5), e**5 / (1 + e**5)]])
    torch.testing.assert_close(w_m[0], expected)
    # w_t, w_a, b enter linearly: w_t = 0, w_a = 0, b = 3 gives uniform rows
    w_m, _, _ = masked_multimodal_attention(t, a, mask, zero, zero, torch.tensor(3.0))
    torch.testing.assert_close(w_m[0], torch.full((2, 2), 0.5))


def test_padding_gets_zero_weight_in_both_directions_and_rows_sum_to_one():
    torch.manual_seed(0)
    t, a = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool()
    w_m, _, _ = masked_multimodal_attention(t, a, mask, torch.tensor(1.0), torch.tensor(1.0),
                                            torch.tensor(0.0))
    assert torch.all(w_m[0, :, 3:] == 0)  # nobody attends to padding
    assert torch.all(w_m[0, 3:, :] == 0)  # padding attends to nothing
    torch.testing.assert_close(w_m[0, :3].sum(-1), torch.ones(3))
    torch.testing.assert_close(w_m[1].sum(-1), torch.ones(5))


def test_reference_scaling_is_one_detached_scalar_for_the_batch():
    x = torch.tensor([[[3.0, 4.0]], [[0.0, 0.0]]], requires_grad=True)  # flat norm 5
    y = scale_reference(x)
    torch.testing.assert_close(y.detach(), x.detach() / math.sqrt(5.0))
    y.sum().backward()  # the divisor is detached: d/dx = 1/sqrt(5) everywhere
    torch.testing.assert_close(x.grad, torch.full_like(x, 1 / math.sqrt(5.0)))


def test_paper_scaling_is_per_utterance_over_real_tokens():
    x = torch.tensor([[[3.0, 4.0], [9.0, 9.0]], [[0.0, 2.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, False], [True, True]])  # row (0, 1) is padding
    y = scale_paper(x, mask)
    torch.testing.assert_close(y[0, 0], torch.tensor([3.0, 4.0]) / math.sqrt(5.0))
    torch.testing.assert_close(y[1, 0], torch.tensor([0.0, 2.0]) / math.sqrt(2.0))


@pytest.mark.parametrize("scaling", ["paper", "reference"])
def test_gradients_reach_every_cmbert_parameter(scaling):
    cfg = ModelConfig(model="cmbert", audio_dim=4, d_proj=3, scaling=scaling, cls_audio="mean")
    model = build_model(cfg, encoder=tiny_encoder())
    torch.manual_seed(1)
    ids = torch.tensor([[101, 2000, 2001, 102, 0], [101, 2003, 102, 0, 0]])
    mask = (ids != 0).long()
    audio = torch.randn(2, 5, 4) * mask[..., None]
    out = model(ids, mask, torch.zeros_like(ids), audio, torch.tensor([1.0, -2.0]))
    out.loss.backward()
    for name in ("w_t", "w_a", "proj_t.weight", "proj_a.weight", "dense.weight",
                 "regressor.weight", "encoder.encoder.layer.0.attention.self.query.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and torch.count_nonzero(grad) > 0, name
    # b is in the graph, but adding one constant to every logit of a softmax row changes
    # nothing: its gradient is zero analytically (the paper's b is redundant, eq. 5-6).
    assert model.b.grad is not None and abs(model.b.grad.item()) < 1e-6
    assert model.encoder.get_input_embeddings().weight.grad is None  # frozen
    assert out.extras["W_m"].shape == (2, 5, 5)


def test_param_groups_as_published():
    model = build_model(ModelConfig(model="cmbert", audio_dim=4), encoder=tiny_encoder())
    groups = {g["name"]: g for g in model.param_groups(1e-2, 2e-5, 0.01)}
    named = {id(p): n for n, p in model.named_parameters()}
    names = {k: {named[id(p)] for p in g["params"]} for k, g in groups.items()}
    assert groups["head"]["lr"] == 1e-2 and groups["encoder"]["lr"] == 2e-5
    assert groups["head-no_decay"]["weight_decay"] == 0.0 and groups["head"]["weight_decay"] == 0.01
    assert "regressor.weight" in names["head"] and "regressor.bias" in names["head-no_decay"]
    assert "LayerNorm.weight" in names["head-no_decay"]
    assert all(n.startswith("encoder.") for n in names["encoder"] | names["encoder-no_decay"])
    everything = set().union(*names.values())
    assert not any("word_embeddings" in n for n in everything)  # frozen, not optimised


def test_registry_and_config_validation():
    assert {"tbert", "cmbert"} <= set(MODELS)
    with pytest.raises(ConfigError, match="bogus"):
        ModelConfig.from_dict({"model": "cmbert", "bogus": 1})
    with pytest.raises(ConfigError):
        ModelConfig(scaling="both")
    with pytest.raises(ConfigError, match="model must be one of"):
        ModelConfig(model="nope")
    cfg = ModelConfig(model="magbert", options={"beta": 0.5})
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    old_bundle = dict(ModelConfig().to_dict(), extra={})  # config.json before typed options
    del old_bundle["options"]
    assert ModelConfig.from_dict(old_bundle) == ModelConfig()


# -- word-piece ↔ word audio mapping ------------------------------------------------------------
def test_every_piece_of_a_word_carries_its_vector(tokenizer):
    words = ("unbelievably", "hello", "cmbert", "tokenisation")
    feats = np.arange(4 * 3, dtype=np.float32).reshape(4, 3) + 1.0  # (4 words, 3 columns)
    cfg = ModelConfig(audio_dim=3, cls_audio="zero")
    batch = prepare_batch(tokenizer, [(words, feats)], cfg, AudioStats.identity(3))
    ids = batch["input_ids"][0].tolist()
    word_ids = tokenizer(list(words), is_split_into_words=True).word_ids()
    assert len(ids) > len(words) + 2  # some words really split into several pieces
    for i, w in enumerate(word_ids):
        expected = np.zeros(3) if w is None else feats[w]
        np.testing.assert_array_equal(batch["audio"][0, i].numpy(), expected)
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id


def test_cls_mean_padding_and_standardisation(tokenizer):
    feats = np.array([[1.0, 10.0], [3.0, 30.0]], dtype=np.float32)
    stats = AudioStats(mean=(2.0, 20.0), std=(1.0, 10.0))
    cfg = ModelConfig(audio_dim=2, cls_audio="mean")
    batch = prepare_batch(tokenizer, [(("good", "day"), feats), (("a", "much", "longer", "one"),
                          np.ones((4, 2), np.float32))], cfg, stats)
    audio, mask = batch["audio"], batch["attention_mask"]
    np.testing.assert_allclose(audio[0, 1].numpy(), [-1.0, -1.0])  # standardised
    np.testing.assert_allclose(audio[0, 2].numpy(), [1.0, 1.0])
    np.testing.assert_allclose(audio[0, 0].numpy(), [0.0, 0.0])  # mean of the two words
    assert torch.all(audio[0][mask[0] == 0] == 0)  # padding zeros
    assert mask[0].sum() == 4 and mask[1].sum() == 6


def test_truncation_at_max_len_keeps_pieces_on_their_words(tokenizer):
    words = tuple(f"word{i}" for i in range(60))
    feats = np.arange(60, dtype=np.float32)[:, None].repeat(2, axis=1)
    batch = prepare_batch(tokenizer, [(words, feats)], ModelConfig(audio_dim=2, cls_audio="zero"),
                          AudioStats.identity(2))
    assert batch["input_ids"].shape == (1, 50)
    word_ids = tokenizer(list(words), is_split_into_words=True, truncation=True,
                         max_length=50).word_ids()
    for i, w in enumerate(word_ids):
        assert batch["audio"][0, i, 0].item() == (0.0 if w is None else float(w))
    assert batch["input_ids"][0, -1].item() == tokenizer.sep_token_id
    assert batch["audio"][0, -1].abs().sum() == 0


def test_mismatched_features_are_a_model_error(tokenizer):
    with pytest.raises(ModelError, match="do not match"):
        prepare_batch(tokenizer, [(("a", "b"), np.zeros((3, 4), np.float32))],
                      ModelConfig(audio_dim=4), None)


def test_word_piece_audio_text_only_is_zeros():
    assert not word_piece_audio([None, 0, 1, None], None, 5, "mean").any()


# -- the property of the published model ----------------------------------------------------------
@pytest.mark.parametrize("scaling", ["paper", "reference"])
def test_cls_zero_is_invariant_to_audio_and_mean_is_not(tokenizer, covarep_words, scaling):
    words = ("kids", "are", "talking", "by", "the", "door")
    a, b = covarep_words
    assert not np.allclose(a, b)
    stats = AudioStats.from_features([a, b], 74)
    torch.manual_seed(0)
    encoder = tiny_encoder(tokenizer.vocab_size)
    preds = {}
    for cls_audio in ("zero", "mean"):
        cfg = ModelConfig(model="cmbert", cls_audio=cls_audio, scaling=scaling)
        torch.manual_seed(0)
        model = build_model(cfg, encoder=encoder).eval()
        with torch.no_grad():
            for name, feats in (("a", a), ("b", b)):
                batch = prepare_batch(tokenizer, [(words, feats)], cfg, stats)
                preds[cls_audio, name] = model(**batch).pred
    assert torch.equal(preds["zero", "a"], preds["zero", "b"])  # identical to the last bit
    assert not torch.equal(preds["mean", "a"], preds["mean", "b"])


# -- schedule and EMA -----------------------------------------------------------------------------
def test_linear_warmup_then_decay():
    f = linear_warmup_decay(total_steps=20, warmup=0.1)  # 2 warm-up steps
    assert [f(0), f(1)] == [0.5, 1.0]
    assert f(2) == pytest.approx(1.0) and f(11) == pytest.approx(0.5) and f(20) == 0.0


def test_ema_formula():
    lin = torch.nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    ema = EMA(lin, decay=0.9)
    with torch.no_grad():
        lin.weight.fill_(3.0)
    ema.update(lin)  # 0.9 * 1 + 0.1 * 3 = 1.2
    with ema.applied(lin):
        torch.testing.assert_close(lin.weight, torch.full((1, 2), 1.2))
    torch.testing.assert_close(lin.weight, torch.full((1, 2), 3.0))  # restored
    with pytest.raises(ValueError):
        EMA(lin, decay=1.0)


def test_models_without_options_reject_them_by_name():
    from cmbert_pipe.errors import ConfigError
    from cmbert_pipe.model import ModelConfig

    for name in ("cmbert", "tbert"):
        with pytest.raises(ConfigError, match="takes no options, got beta"):
            ModelConfig(model=name, options={"beta": 0.5})


def test_model_options_from_the_command_line_are_typed():
    from cmbert_pipe.config import CmsOptions, build_sections

    typed = build_sections({"model": ModelConfig}, {"model.model": "cmsbert-clr"},
                           ["model.options.cms=false", "model.options.aux_weight=0.25",
                            "model.options.label_smoothing=0.2"])
    options = typed["model"].options
    assert options == CmsOptions(cms=False, aux_weight=0.25, label_smoothing=0.2)
