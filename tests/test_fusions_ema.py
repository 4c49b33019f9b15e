"""EMA of the parameters (CMSBERT-CLR part 3, the trainer's ``--ema DECAY``): after one optimiser
step the averaged weights equal ``d·θ₀ + (1−d)·θ₁``, evaluation sees them, training resumes on
the raw weights."""

from __future__ import annotations

import pytest
import torch

from cmbert_pipe.model import ModelConfig, build_model
from cmbert_pipe.model.ema import EMA


def tiny_model():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    enc = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=32,
                               max_position_embeddings=16), add_pooling_layer=False)
    return build_model(ModelConfig(model="cmsbert-clr", audio_dim=4, max_len=16), encoder=enc)


def one_step(model, lr=0.1):
    ids = torch.tensor([[2, 7, 9, 3], [2, 11, 3, 0]])
    mask = (ids > 0).long()
    audio = torch.randn(2, 4, 4) * mask[..., None]
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    opt.zero_grad()
    model(ids, mask, torch.zeros_like(ids), audio, torch.tensor([1.5, -2.0])).loss.backward()
    opt.step()


@pytest.mark.parametrize("decay", [0.5, 0.9, 0.999])
def test_ema_after_one_step_equals_the_formula(decay):
    model = tiny_model()
    theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    ema = EMA(model, decay)
    one_step(model)
    theta1 = {n: p.detach().clone() for n, p in model.named_parameters()}
    ema.update(model)
    moved = 0
    for name, shadow in zip(ema.names, ema.shadow):
        expected = decay * theta0[name] + (1 - decay) * theta1[name]
        torch.testing.assert_close(shadow, expected, rtol=1e-6, atol=1e-7)
        moved += int(not torch.equal(theta0[name], theta1[name]))
    assert moved > 10  # the step really changed the weights the EMA averages
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and not frozen & set(ema.names)  # frozen embeddings are not averaged

    with ema.applied(model) as m:  # evaluation sees the averaged weights ...
        params = dict(m.named_parameters())
        for name, shadow in zip(ema.names, ema.shadow):
            assert torch.equal(params[name], shadow)
    for name, p in model.named_parameters():  # ... and training resumes on the raw ones
        assert torch.equal(p, theta1[name])


def test_ema_rejects_a_decay_outside_0_1():
    with pytest.raises(ValueError, match="decay"):
        EMA(tiny_model(), 1.0)
