"""MAG-BERT and CMSBERT-CLR: the gate's maths, the contrastive loss, the ablation switches.

Most tests use a tiny randomly initialised ``BertModel`` (a real Hugging Face encoder, 2 layers)
so that they run in milliseconds; the layer-by-layer equivalence is also checked on the embedded
MiniLM checkpoint, the encoder the product ships."""

from __future__ import annotations

import math

import pytest
import torch

from cmbert_pipe.errors import ConfigError
from cmbert_pipe.model import ModelConfig, build_model
from cmbert_pipe.model.cmsbert import (
    CmsBertClr,
    ContextModalityShift,
    info_nce,
    sentiment_classes,
    utterance_audio,
)
from cmbert_pipe.model.magbert import (
    MagBert,
    MultimodalAdaptationGate,
    encode_with_shift,
    norm_ratio_scale,
)

A = 74  # audio dim
H = 32  # hidden size of the tiny encoder


def tiny_encoder(seed: int = 0, layers: int = 2):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=120, hidden_size=H, num_hidden_layers=layers,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    return BertModel(cfg, add_pooling_layer=False).eval()


def batch(seed: int = 0, b: int = 3, length: int = 9, audio_scale: float = 1.0):
    """Random word-pieces with padding at the end of rows 1.. and audio on real tokens."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 120, (b, length), generator=g)
    mask = torch.ones(b, length, dtype=torch.long)
    for i in range(1, b):
        mask[i, length - 2 * i:] = 0
    ids = ids * mask
    audio = torch.randn(b, length, A, generator=g) * audio_scale * mask[..., None]
    audio[:, 0] = 0.0  # [CLS] carries zeros (cls_audio="zero")
    types = torch.zeros_like(ids)
    return ids, mask, types, audio


def text_only_cls(model, ids, mask, types) -> torch.Tensor:
    """What T-BERT's head would see: the plain encoder's last-layer [CLS] (B, H)."""
    return model.encoder(input_ids=ids, attention_mask=mask,
                         token_type_ids=types).last_hidden_state[:, 0]


# -- running the encoder layer by layer ------------------------------------------------------
@pytest.mark.parametrize("layer_k", [1, 2])
def test_layer_by_layer_with_zero_shift_equals_encoder(layer_k):
    enc = tiny_encoder()
    ids, mask, types, _ = batch()
    with torch.no_grad():
        ref = enc(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        got, _ = encode_with_shift(enc, ids, mask, types, layer_k,
                                   lambda z, y, m: (torch.zeros_like(z), {}))
    real = mask.bool()
    assert torch.equal(got[real], ref[real])


def test_layer_by_layer_matches_embedded_minilm_with_padding():
    from cmbert_pipe.model import load_encoder
    from cmbert_pipe.model.inputs import load_tokenizer

    enc = load_encoder("").eval()
    tok = load_tokenizer("")
    b = tok(["kids are talking by the door",
             "dogs are sitting by the door, and nobody seems to mind it at all"],
            padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = enc(**b).last_hidden_state
        got, _ = encode_with_shift(enc, b["input_ids"], b["attention_mask"], b["token_type_ids"],
                                   3, lambda z, y, m: (torch.zeros_like(z), {}))
    real = b["attention_mask"].bool()
    torch.testing.assert_close(got[real], ref[real], rtol=0, atol=1e-5)


def test_padding_does_not_leak_into_real_tokens():
    """The extended mask must hide padding: appending padding changes nothing."""
    enc = tiny_encoder()
    ids, mask, types, _ = batch(b=1, length=6)
    pad_ids = torch.cat([ids, torch.full((1, 4), 7)], dim=1)  # junk ids under a zero mask
    pad_mask = torch.cat([mask, torch.zeros(1, 4, dtype=torch.long)], dim=1)

    def shift(z, y, m):
        return 0.1 * z * m[..., None], {}

    with torch.no_grad():
        short, _ = encode_with_shift(enc, ids, mask, types, 1, shift)
        long, _ = encode_with_shift(enc, pad_ids, pad_mask, torch.zeros_like(pad_ids), 1, shift)
    torch.testing.assert_close(long[:, :6], short, rtol=0, atol=1e-5)


# -- the gate: zero non-verbal input, the β bound ------------------------------------------
@pytest.mark.parametrize("name,extra", [("magbert", {}), ("cmsbert-clr", {}),
                                        ("magbert", {"mag_layer": 2, "beta": 3.0})])
def test_zero_audio_leaves_text_states_unchanged(name, extra):
    enc = tiny_encoder()
    model = build_model(ModelConfig(model=name, options=extra), encoder=enc).eval()
    ids, mask, types, audio = batch()
    with torch.no_grad():
        out = model(ids, mask, types, torch.zeros_like(audio))
        expected = model.regressor(text_only_cls(model, ids, mask, types)).squeeze(-1)
    assert torch.equal(out.pred, expected)
    assert torch.count_nonzero(out.extras["gate"]) == 0


@pytest.mark.parametrize("name", ["magbert", "cmsbert-clr"])
def test_audio_moves_the_prediction(name):
    enc = tiny_encoder()
    model = build_model(ModelConfig(model=name), encoder=enc).eval()
    ids, mask, types, audio = batch()
    with torch.no_grad():
        a = model(ids, mask, types, audio).pred
        b = model(ids, mask, types, audio.flip(0).roll(1, dims=1) * mask[..., None]).pred
        gate = model(ids, mask, types, audio).extras["gate"]
    assert not torch.allclose(a, b)
    assert gate[mask.bool()].max() > 0
    assert torch.count_nonzero(gate[~mask.bool()]) == 0  # padding is never moved


def test_cms_shifts_cls_from_the_utterance_context():
    """MAG moves [CLS] only through its own (zero) audio; the context shift moves it directly."""
    enc = tiny_encoder()
    ids, mask, types, audio = batch()
    with torch.no_grad():
        mag = build_model(ModelConfig(model="magbert"), encoder=enc).eval()
        cms = build_model(ModelConfig(model="cmsbert-clr"), encoder=enc).eval()
        assert torch.count_nonzero(mag(ids, mask, types, audio).extras["gate"][:, 0]) == 0
        out = cms(ids, mask, types, audio)
    assert (out.extras["gate"][:, 0] > 0).all()
    attn = out.extras["context_attn"]  # (B, L, L)
    torch.testing.assert_close(attn.sum(-1), torch.ones(attn.shape[:2]))
    assert torch.count_nonzero(attn * (1 - mask[:, None, :])) == 0


@pytest.mark.parametrize("beta", [0.05, 0.5, 1.0, 4.0])
def test_norm_ratio_scale_never_exceeds_beta(beta):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(4, 7, H, generator=g)
    h = torch.randn(4, 7, H, generator=g) * torch.logspace(-3, 3, 7)[None, :, None]
    shift, alpha = norm_ratio_scale(z, h, beta)
    ratio = shift.norm(dim=-1) / z.norm(dim=-1)
    assert (ratio <= beta * (1 + 1e-5)).all()
    assert (alpha <= 1).all()
    big = h.norm(dim=-1) > beta * z.norm(dim=-1)  # where the cap must bind ...
    assert big.any() and (~big).any()
    torch.testing.assert_close(ratio[big], torch.full_like(ratio[big], beta))  # ... it binds
    torch.testing.assert_close(shift[~big], h[~big])  # elsewhere H passes unchanged (α = 1)


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_gates_respect_beta_on_loud_audio(beta):
    g = torch.Generator().manual_seed(2)
    z = torch.randn(2, 6, H, generator=g)
    y = torch.nn.functional.layer_norm(z, (H,))
    mask = torch.ones(2, 6, dtype=torch.bool)
    audio = torch.randn(2, 6, A, generator=g) * 1e3
    torch.manual_seed(0)
    mag = MultimodalAdaptationGate(H, {"audio": A}, beta, dropout=0.1).eval()
    cms = ContextModalityShift(H, A, 16, beta, dropout=0.1).eval()
    for shift in (mag(z, y, mask, {"audio": audio})[0], cms(z, y, mask, audio)[0]):
        ratio = shift.norm(dim=-1) / z.norm(dim=-1)
        assert (ratio <= beta * (1 + 1e-5)).all()
        assert ratio.max() > 0.99 * beta  # loud audio reaches the cap


def test_visual_stream_is_optional_and_counts():
    enc = tiny_encoder()
    model = build_model(ModelConfig(model="magbert", options={"streams": {"visual": 5}}),
                        encoder=enc).eval()
    ids, mask, types, audio = batch()
    visual = torch.randn(*ids.shape, 5) * mask[..., None]
    with torch.no_grad():
        base = model(ids, mask, types, audio).pred
        zeros = model(ids, mask, types, audio, visual=torch.zeros_like(visual)).pred
        seen = model(ids, mask, types, audio, visual=visual).pred
    assert torch.equal(base, zeros)
    assert not torch.allclose(base, seen)
    with pytest.raises(ConfigError, match="dim 4"):
        model(ids, mask, types, audio, visual=visual[..., :4])
    with pytest.raises(ConfigError, match="thermal"):
        model(ids, mask, types, audio, thermal=visual)


# -- the contrastive loss ------------------------------------------------------------------
def simplex(n: int, dim: int) -> torch.Tensor:
    """n unit vectors in R^dim with pairwise cosine -1/(n-1) (a regular simplex), n <= dim."""
    e = torch.eye(n, dim)
    centred = e - e.mean(0, keepdim=True)
    return torch.nn.functional.normalize(centred, dim=-1)


def test_info_nce_aligned_pairs_give_the_minimum():
    n, dim, tau = 6, 8, 0.5
    t = simplex(n, dim)
    aligned = info_nce(t, t, tau)
    # closed form: the diagonal logit 1/τ, the n-1 others -1/((n-1)τ)
    off = -1.0 / ((n - 1) * tau)
    expected = -(1 / tau) + math.log(math.exp(1 / tau) + (n - 1) * math.exp(off))
    assert aligned.item() == pytest.approx(expected, rel=1e-5)
    # any rotation of both sets together is equally aligned; misaligned pairs are worse
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(0)))
    assert info_nce(t @ q, t @ q, tau).item() == pytest.approx(aligned.item(), rel=1e-5)
    assert info_nce(t, t.roll(1, dims=0), tau) > aligned + 1.0
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        noisy = t + 0.2 * torch.randn(n, dim, generator=g)
        assert info_nce(t, noisy, tau) > aligned
    # free optimisation from random starts never goes below the aligned simplex
    for seed in range(3):
        torch.manual_seed(seed)
        x = torch.randn(n, dim, requires_grad=True)
        y = torch.randn(n, dim, requires_grad=True)
        opt = torch.optim.Adam([x, y], lr=0.05)
        for _ in range(400):
            opt.zero_grad()
            loss = info_nce(x, y, tau)
            loss.backward()
            opt.step()
        assert loss.item() >= aligned.item() - 1e-4
        assert loss.item() == pytest.approx(aligned.item(), abs=0.05)


def test_info_nce_is_invariant_to_scale_and_symmetric():
    g = torch.Generator().manual_seed(4)
    t, a = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    torch.testing.assert_close(info_nce(3 * t, 0.1 * a, 0.2), info_nce(t, a, 0.2))
    torch.testing.assert_close(info_nce(t, a, 0.2), info_nce(a, t, 0.2))


# -- the auxiliary head, ablation switches, options ----------------------------------------
def test_sentiment_classes_are_the_acc7_bins():
    labels = torch.tensor([-3.7, -3.0, -1.4, -0.2, 0.6, 1.5, 2.4, 3.0, 9.0])
    assert sentiment_classes(labels).tolist() == [0, 0, 2, 3, 4, 5, 5, 6, 6]


def test_utterance_audio_skips_specials_and_padding():
    audio = torch.zeros(1, 5, 2)
    audio[0, 1] = torch.tensor([1.0, 2.0])
    audio[0, 2] = torch.tensor([3.0, 4.0])
    audio[0, 4] = torch.tensor([100.0, 100.0])  # padding position
    mask = torch.tensor([[True, True, True, True, False]])  # [CLS] w w [SEP] pad
    torch.testing.assert_close(utterance_audio(audio, mask), torch.tensor([[2.0, 3.0]]))


def test_cmsbert_losses_follow_the_switches():
    enc = tiny_encoder()
    ids, mask, types, audio = batch(b=4)
    labels = torch.tensor([-2.0, 0.5, 1.0, 3.0])

    def losses(**extra):
        torch.manual_seed(0)
        model = build_model(ModelConfig(model="cmsbert-clr", options=extra), encoder=enc).train()
        return model, model(ids, mask, types, audio, labels)

    _, full = losses()
    assert {"loss_mse", "loss_cls", "loss_contrastive", "gate"} <= set(full.extras)
    _, no_cl = losses(contrastive=False)
    assert "loss_contrastive" not in no_cl.extras
    _, no_aux = losses(aux_weight=0.0)
    assert "loss_cls" not in no_aux.extras
    model, no_cms = losses(cms=False, contrastive=False, aux_weight=0.0)
    assert "gate" not in no_cms.extras
    torch.testing.assert_close(no_cms.loss, no_cms.extras["loss_mse"])
    model.eval()  # without the shift, audio cannot reach the prediction
    with torch.no_grad():
        a = model(ids, mask, types, audio).pred
        b = model(ids, mask, types, torch.zeros_like(audio)).pred
    assert torch.equal(a, b)
    # the total is the weighted sum of its parts
    full_model, out = losses(contrastive_weight=0.3, aux_weight=0.7, label_smoothing=0.2)
    ex = out.extras
    torch.testing.assert_close(
        out.loss, ex["loss_mse"] + 0.7 * ex["loss_cls"] + 0.3 * ex["loss_contrastive"])
    full_model.eval()  # in eval the loss is the MSE alone (comparable dev losses)
    with torch.no_grad():
        ev = full_model(ids, mask, types, audio, labels)
    torch.testing.assert_close(ev.loss, ((ev.pred - labels) ** 2).mean())


def test_label_smoothing_changes_the_auxiliary_loss():
    enc = tiny_encoder()
    ids, mask, types, audio = batch(b=4)
    labels = torch.tensor([-2.0, 0.5, 1.0, 3.0])
    vals = []
    for eps in (0.0, 0.3):
        torch.manual_seed(0)
        model = build_model(ModelConfig(model="cmsbert-clr", options={"label_smoothing": eps}),
                            encoder=enc).train()
        torch.manual_seed(1)
        out = model(ids, mask, types, audio, labels)
        logp = torch.log_softmax(out.extras["class_logits"], -1)
        k = sentiment_classes(labels)
        hard = -logp[torch.arange(4), k].mean()
        smooth = (1 - eps) * hard - eps * logp.mean(-1).mean()
        torch.testing.assert_close(out.extras["loss_cls"], smooth)
        vals.append(out.extras["loss_cls"])
    assert vals[0] != vals[1]


def test_unknown_and_invalid_options_are_named():
    enc = tiny_encoder()
    with pytest.raises(ConfigError, match="betta"):
        build_model(ModelConfig(model="magbert", options={"betta": 1.0}), encoder=enc)
    with pytest.raises(ConfigError, match="past the encoder"):
        build_model(ModelConfig(model="magbert", options={"mag_layer": 3}), encoder=enc)
    with pytest.raises(ConfigError, match="temperature"):
        build_model(ModelConfig(model="cmsbert-clr", options={"temperature": 0.0}), encoder=enc)
    assert isinstance(build_model(ModelConfig(model="magbert"), encoder=enc), MagBert)
    assert isinstance(build_model(ModelConfig(model="cmsbert-clr"), encoder=enc), CmsBertClr)


@pytest.mark.parametrize("name", ["magbert", "cmsbert-clr"])
def test_a_few_steps_fit_a_batch_and_train_the_gate(name):
    """Gradients reach the gate: a few Adam steps lower the training loss and move its weights."""
    enc = tiny_encoder()
    model = build_model(ModelConfig(model=name, dropout=0.0,
                                    options={"shift_dropout": 0.0}), encoder=enc).train()
    ids, mask, types, audio = batch(b=4)
    labels = torch.tensor([-2.0, 0.5, 1.0, 3.0])
    gate_params = [p for n, p in model.named_parameters() if n.startswith(("mag.", "shift."))]
    before = [p.detach().clone() for p in gate_params]
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    mse = []
    for _ in range(30):
        opt.zero_grad()
        out = model(ids, mask, types, audio, labels)
        out.loss.backward()
        opt.step()
        mse.append(((out.pred - labels) ** 2).mean().item())
    assert mse[-1] < 0.5 * mse[0]
    assert any(not torch.equal(b, p) for b, p in zip(before, gate_params))
