"""The acoustic path (model/acoustic.py), the objectives, per-speaker standardisation and early
stopping: maths checked against direct formulas, zero audio adding exactly nothing, and every
new option trained, saved, reloaded and scored with the embedded MiniLM encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cmbert_pipe.errors import ConfigError
from cmbert_pipe.model import ModelConfig, build_model
from cmbert_pipe.model.acoustic import AcousticGate, AudioHead, average_steps, masked_word_stats
from cmbert_pipe.model.bundle import load_bundle
from cmbert_pipe.model.inputs import AudioStats, load_tokenizer, prepare_batch
from cmbert_pipe.model.objectives import (
    balanced_class_weights,
    objective_loss,
    score_from_logits,
)
from cmbert_pipe.train import (
    Example,
    TrainConfig,
    evaluate_bundle_with_notes,
    predict_examples,
    standardise_audio,
    train_one,
    train_seeds,
)

DIM = 25
SENTENCES = ("kids are talking by the door", "dogs are sitting by the door")


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def examples(n: int = 24, frames: bool = True) -> list[Example]:
    """Synthetic utterances whose audio carries the label (a shift of every column), spread
    over four speakers with different offsets (what per-speaker standardisation removes)."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        words = tuple(SENTENCES[i % 2].split())
        label = 2.0 if i % 3 else -2.0
        offset = 3.0 * (i % 4)  # the speaker's own level
        feats = rng.normal(size=(len(words), DIM)).astype(np.float32) + 0.5 * label + offset
        fr = (rng.normal(size=(40 + i, DIM)).astype(np.float32) + 0.5 * label + offset
              if frames else None)
        split = "train" if i < 14 else "dev" if i < 19 else "test"
        out.append(Example(f"u{i}", words, feats, label, split, f"spk{i % 4}", fr))
    return out


# -- maths ------------------------------------------------------------------------------------
def test_gate_maths_matches_the_formula():
    torch.manual_seed(0)
    gate = AcousticGate(hidden_size=6, audio_size=4)
    h_cls, a = torch.randn(3, 6), torch.randn(3, 4)
    h, g = gate(h_cls, a)
    w_g, b_g, w_a = gate.gate.weight, gate.gate.bias, gate.proj.weight
    g_ref = torch.sigmoid(torch.cat([h_cls, a], -1) @ w_g.T + b_g)
    torch.testing.assert_close(g, g_ref)
    torch.testing.assert_close(h, h_cls + g_ref * (a @ w_a.T))
    assert gate.proj.bias is None
    assert torch.all((g > 0) & (g < 1))


def test_pool_statistics():
    x = torch.tensor([[[1.0, 2.0], [3.0, 6.0], [9.0, 9.0]],
                      [[4.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    got = masked_word_stats(x, mask)
    torch.testing.assert_close(got[0], torch.tensor([2.0, 4.0, 1.0, 2.0, 1.0, 2.0, 3.0, 6.0]))
    torch.testing.assert_close(got[1], torch.tensor([4.0, 0.0, 0.0, 0.0, 4.0, 0.0, 4.0, 0.0]))


def test_frames_averaged_in_groups():
    """Groups of ``pool`` steps, the last one padded; masked steps left out of each mean; a
    group without a valid step is masked and zero."""
    x = torch.arange(1.0, 8.0).reshape(1, 7, 1)  # steps 1..7
    mask = torch.tensor([[True, True, False, True, True, True, True]])
    got, n = average_steps(x, mask, 3)
    torch.testing.assert_close(got[0, :, 0], torch.tensor([1.5, 5.0, 7.0]))
    assert n.tolist() == [[2.0, 3.0, 1.0]]  # valid steps per group
    got, n = average_steps(x, torch.tensor([[True] * 3 + [False] * 4]), 3)
    torch.testing.assert_close(got[0, :, 0], torch.tensor([2.0, 0.0, 0.0]))
    assert (n > 0).tolist() == [[True, False, False]]
    same, n1 = average_steps(x, mask, 1)
    torch.testing.assert_close(same, x * mask[..., None])  # pool 1: masked steps zeroed
    assert torch.equal(n1 > 0, mask)


def test_frame_attention_covers_every_input_frame():
    torch.manual_seed(0)
    head = AudioHead("encoder", DIM, 16, True, frame_pool=5).eval()
    f, fmask = torch.randn(2, 23, DIM), torch.ones(2, 23, dtype=torch.bool)
    fmask[1, 17:] = False
    _, extras = head(torch.randn(2, 4, DIM), torch.ones(2, 4, dtype=torch.bool), f, fmask)
    attn = extras["frame_attn"]
    assert attn.shape == (2, 23)
    torch.testing.assert_close(attn.sum(1), torch.ones(2))
    assert torch.count_nonzero(attn[1, 20:]) == 0  # a fully masked group gets nothing


def test_bundles_from_before_frame_pool_read_the_10ms_frames():
    old = ModelConfig(model="audio", audio_dim=DIM, audio_head="encoder", frames=True).to_dict()
    del old["frame_pool"]
    assert ModelConfig.from_dict(old).frame_pool == 1
    assert ModelConfig(model="audio", audio_head="encoder", frames=True).frame_pool == 5
    with pytest.raises(ConfigError, match="frame_pool"):
        ModelConfig(frame_pool=0)


@pytest.mark.parametrize("kind,frames,pool", [("pool", False, 1), ("encoder", False, 1),
                                              ("encoder", True, 1), ("encoder", True, 5)])
def test_zero_audio_gives_zero_audio_vector(kind, frames, pool):
    torch.manual_seed(0)
    head = AudioHead(kind, DIM, 16, frames, frame_pool=pool)
    head.train()  # dropout active: zero stays zero
    w = torch.zeros(2, 5, DIM)
    mask = torch.ones(2, 5, dtype=torch.bool)
    f, fmask = torch.zeros(2, 30, DIM), torch.ones(2, 30, dtype=torch.bool)
    a, _ = head(w, mask, f, fmask)
    assert torch.count_nonzero(a) == 0
    a2, _ = head(torch.randn(2, 5, DIM), mask, torch.randn(2, 30, DIM), fmask)
    assert torch.count_nonzero(a2) > 0


@pytest.mark.parametrize("model", ["cmbert", "magbert", "cmsbert-clr"])
@pytest.mark.parametrize("head", ["pool", "encoder"])
def test_zero_audio_adds_nothing_to_cls(model, head):
    """Text only (no audio at all): the model with the acoustic path gives exactly the scores
    of the same weights without it."""
    tok = load_tokenizer("")
    items = [(tuple(s.split()), None) for s in SENTENCES]
    plain = ModelConfig(model=model, audio_dim=DIM)
    withp = plain.replace(audio_head=head)
    torch.manual_seed(0)
    net_plain = build_model(plain).eval()
    torch.manual_seed(0)
    net = build_model(withp).eval()
    net.load_state_dict(net_plain.state_dict(), strict=False)  # shared weights identical
    with torch.no_grad():
        p0 = net_plain(**prepare_batch(tok, items, plain, None)).pred
        b = prepare_batch(tok, items, withp, None)
        assert "word_audio" in b and torch.count_nonzero(b["word_audio"]) == 0
        p1 = net(**b).pred
        ex = net.explain(b)
    assert torch.equal(p0, p1)
    assert np.all(ex.acoustic_shift == 0.0) and ex.acoustic_gate is not None


def test_modality_dropout_hides_text_in_training_only():
    """ModDrop on the text side: in training a share ≈ p of the utterances reach the gate with
    h_CLS = 0 (the rest unchanged); in evaluation nothing is dropped; p = 0 draws nothing."""
    net = build_model(ModelConfig(model="cmbert", audio_dim=DIM, audio_head="pool",
                                  modality_dropout=0.4))
    h = torch.randn(4000, net.hidden_size) + 1.0  # no row is zero by chance
    a = torch.randn(4000, 8)
    a[2000:] = 0.0  # utterances without audio: their text is never hidden
    net.train()
    torch.manual_seed(0)
    out = net.drop_text(h, a)
    zero = (out == 0).all(dim=1)
    assert 0.35 < zero[:2000].float().mean().item() < 0.45
    assert not zero[2000:].any()
    assert torch.equal(out[~zero], h[~zero])
    net.eval()
    assert torch.equal(net.drop_text(h, a), h)
    plain = build_model(ModelConfig(model="cmbert", audio_dim=DIM, audio_head="pool")).train()
    state = torch.random.get_rng_state()
    assert torch.equal(plain.drop_text(h, a), h)
    assert torch.equal(torch.random.get_rng_state(), state)  # no draw: training unchanged


def test_modality_dropout_text_hidden_means_audio_alone():
    """With the text dropped, the fused vector is g ⊙ W_a a: the text tokens change nothing."""
    torch.manual_seed(0)
    cfg = ModelConfig(model="magbert", audio_dim=DIM, audio_head="pool",
                      modality_dropout=0.999999)
    net = build_model(cfg).train()
    for m in net.modules():  # hidden dropout off, ModDrop on: compare like with like
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    tok = load_tokenizer("")
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(6, DIM)).astype(np.float32)
    a = prepare_batch(tok, [(tuple(SENTENCES[0].split()), feats)], cfg, None)
    b = prepare_batch(tok, [(tuple(SENTENCES[1].split()), feats)], cfg, None)
    with torch.no_grad():
        torch.manual_seed(1)
        pa = net(**a).pred
        torch.manual_seed(1)
        pb = net(**b).pred
    assert torch.allclose(pa, pb, atol=1e-5)


def test_objectives_scores_and_losses():
    z = torch.tensor([[0.0], [2.0], [-4.0]])
    s = score_from_logits("binary", z)
    torch.testing.assert_close(s, 3 * (2 * torch.sigmoid(z[:, 0]) - 1))
    labels = torch.tensor([1.0, 0.0, -2.0])
    w = torch.tensor([2.0, 0.5])  # negative, positive
    loss = objective_loss("binary", z, s, labels, w)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    ref = (0.5 * bce(z[0], torch.ones(1)) + 2.0 * bce(z[2], torch.zeros(1))) / 2.5
    torch.testing.assert_close(loss, ref)
    logits7 = torch.zeros(1, 7)
    logits7[0, 6] = 50.0  # all mass on class +3
    torch.testing.assert_close(score_from_logits("class7", logits7), torch.tensor([3.0]))
    np.testing.assert_allclose(balanced_class_weights("binary", [1, 2, -1, 0, 3]),
                               [4 / (2 * 1), 4 / (2 * 3)])
    assert balanced_class_weights("regression", [1.0]) is None


# -- per-speaker statistics -------------------------------------------------------------------
def test_speaker_standardisation_uses_each_speakers_own_audio():
    exs = examples()
    stats = AudioStats.from_features([x.word_features for x in exs], DIM)
    norm = standardise_audio(exs, "speaker", DIM, stats, None)
    assert norm.word_stats is None and "unlabelled" in norm.note
    for spk in {x.speaker for x in exs}:
        mine = [x for x in exs if x.speaker == spk]
        allw = np.concatenate([x.word_features for x in mine]).astype(np.float64)
        normed = np.concatenate([x.word_features for x in norm.examples if x.speaker == spk])
        np.testing.assert_allclose(normed, (allw - allw.mean(0)) / allw.std(0), atol=1e-5)
        fr = np.concatenate([x.frames for x in mine]).astype(np.float64)
        frn = np.concatenate([x.frames for x in norm.examples if x.speaker == spk])
        np.testing.assert_allclose(frn.mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(frn.std(0), 1, atol=1e-4)
        assert fr.shape == frn.shape
    # a speaker-less example falls back to the given (global) statistics
    odd = Example("x", ("a",), np.ones((1, DIM), np.float32), 1.0, "test", "")
    norm = standardise_audio([odd], "speaker", DIM, stats, None)
    np.testing.assert_allclose(norm.examples[0].word_features, stats.standardise(odd.word_features))
    assert "without a speaker" in norm.note
    glob = standardise_audio(exs, "global", DIM, stats, None)
    assert glob.word_stats is stats and glob.examples[0] is exs[0]


# -- early stopping ---------------------------------------------------------------------------
def test_early_stopping_stops_after_patience(tmp_path):
    exs = examples(frames=False)
    cfg = ModelConfig(model="audio", audio_dim=DIM, audio_head="pool")
    # lr 1e-12: every update is below float32 resolution, so the dev loss never improves
    tc = TrainConfig(epochs=10, batch_size=8, device="cpu", threads=1, lr_head=1e-12,
                     patience=2)
    res = train_one(exs, cfg, tc, 0, tmp_path / "b")
    assert res.stopped_early and res.best_epoch == 0 and len(res.epoch_seconds) == 3
    res2 = train_one(exs, cfg, TrainConfig(epochs=4, batch_size=8, device="cpu", threads=1,
                                           lr_head=1e-12), 0, tmp_path / "c")
    assert not res2.stopped_early and len(res2.epoch_seconds) == 4


def test_param_groups_three_parts():
    cfg = ModelConfig(model="cmbert", audio_dim=DIM, audio_head="pool")
    net = build_model(cfg)
    groups = net.param_groups(1e-2, 2e-5, 0.01, lr_fusion=1e-3)
    parts = {g["name"]: g["lr"] for g in groups}
    assert parts["encoder"] == 2e-5 and parts["fusion"] == 1e-3 and parts["head"] == 1e-2
    names = {id(p): n for n, p in net.named_parameters()}
    head = [names[id(p)] for g in groups if g["part"] == "head" for p in g["params"]]
    assert sorted(head) == ["regressor.bias", "regressor.weight"]
    fusion = [names[id(p)] for g in groups if g["part"] == "fusion" for p in g["params"]]
    assert "acoustic_gate.gate.weight" in fusion and "proj_a.weight" in fusion
    published = net.param_groups(1e-2, 2e-5, 0.01)
    assert {g["name"] for g in published} == {"head", "head-no_decay", "encoder",
                                              "encoder-no_decay"}


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="audio_head"):
        ModelConfig(audio_head="lstm")
    with pytest.raises(ConfigError, match="objective"):
        ModelConfig(objective="ordinal")
    with pytest.raises(ConfigError, match="frames"):
        ModelConfig(audio_head="pool", frames=True)
    assert ModelConfig(model="audio").audio_head == "pool"  # the audio model is its head
    with pytest.raises(ConfigError, match="no acoustic path"):
        ModelConfig(model="tbert", audio_head="pool")
    with pytest.raises(ConfigError, match="modality_dropout"):
        ModelConfig(model="cmbert", modality_dropout=0.3)  # no acoustic path to carry it
    with pytest.raises(ConfigError, match="modality_dropout"):
        ModelConfig(model="cmbert", audio_head="pool", modality_dropout=1.0)


# -- every new option: train, save, load, evaluate, predict -----------------------------------
@pytest.mark.parametrize("model,head,frames,objective,norm", [
    ("audio", "pool", False, "binary", "global"),
    ("audio", "encoder", True, "class7", "speaker"),
    ("cmbert", "encoder", True, "binary", "speaker"),
    ("magbert", "pool", False, "regression", "global"),
    ("cmsbert-clr", "encoder", False, "binary", "global"),
])
def test_train_save_load_evaluate(tmp_path, model, head, frames, objective, norm):
    exs = examples(frames=frames)
    cfg = ModelConfig(model=model, audio_dim=DIM, audio_head=head, frames=frames,
                      objective=objective, audio_norm=norm)
    tc = TrainConfig(epochs=2, batch_size=8, device="cpu", threads=1, lr_fusion=1e-3,
                     warmup_head=0.0, patience=3)
    summary = train_seeds(exs, cfg, tc, [0], tmp_path / "run")
    res = summary.per_seed[0]
    assert np.isfinite(res.metrics["test"]["mae"]) and res.metrics["test"]["n"] == 5
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["model_config"]["audio_head"] == head
    assert (norm == "speaker") == bool(summary.notes)
    bundle = load_bundle(tmp_path / "run" / "seed-0")
    assert bundle.config == cfg
    assert (bundle.frame_stats is not None) == frames
    if model == "audio":
        assert bundle.model.encoder is None
        assert json.loads((tmp_path / "run" / "seed-0" / "encoder_config.json").read_text()) == {}
    metrics, note = evaluate_bundle_with_notes(tmp_path / "run" / "seed-0", exs, ["test"], "cpu")
    assert metrics["test"] == res.metrics["test"]
    assert (norm == "speaker") == ("unlabelled" in note)
    if norm == "global":
        test = [x for x in exs if x.split == "test"]
        p = predict_examples(bundle.model, test, bundle.tokenizer, bundle.audio_stats,
                             frame_stats=bundle.frame_stats)
        assert p.shape == (5,)
        if objective != "regression":  # the score of a classifier is bounded by construction
            assert np.all(np.abs(p) <= 3.0)


# -- baselines beside every model -------------------------------------------------------------
def test_audio_baseline_trained_beside_the_model(tmp_path):
    """TrainConfig.baselines (default ("audio",)): the audio-only model with the model's own
    head, objective and standardisation is trained on the same seeds into OUT/baselines/audio
    and reported in summary.json; changing the baselines never retrains the model."""
    exs = examples()
    cfg = ModelConfig(model="magbert", audio_dim=DIM, audio_head="encoder", frames=True,
                      objective="binary", audio_norm="speaker")
    tc = TrainConfig(epochs=1, batch_size=8, device="cpu", threads=1, seeds=(0,))
    assert tc.baselines == ("audio",)
    summary = train_seeds(exs, cfg, tc, [0], tmp_path / "run")
    base = summary.baselines["audio"]
    assert base.model_config.model == "audio" and base.model_config.audio_head == "encoder"
    assert base.model_config.frames and base.model_config.objective == "binary"
    assert base.model_config.audio_norm == "speaker"
    assert (tmp_path / "run" / "baselines" / "audio" / "seed-0" / "model.safetensors").is_file()
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["baselines"]["audio"]["mean_std"]["test"]["mae"]["mean"] == \
        base.mean_std["test"]["mae"]["mean"]
    again = train_seeds(exs, cfg, TrainConfig(epochs=1, batch_size=8, device="cpu", threads=1,
                                              seeds=(0,), baselines=()), [0], tmp_path / "run")
    assert again.per_seed[0].resumed and again.baselines == {}


def test_no_audio_baseline_without_audio(tmp_path):
    """Text-only data has no audio baseline; the audio model has no baseline of itself."""
    exs = [Example(x.id, x.words, None, x.label, x.split) for x in examples()]
    tc = TrainConfig(epochs=1, batch_size=8, device="cpu", threads=1, seeds=(0,))
    summary = train_seeds(exs, ModelConfig(model="tbert"), tc, [0], tmp_path / "t")
    assert summary.baselines == {} and not (tmp_path / "t" / "baselines").exists()
    audio = train_seeds(examples(frames=False), ModelConfig(model="audio", audio_dim=DIM), tc,
                        [0], tmp_path / "a")
    assert audio.baselines == {}
    with pytest.raises(ConfigError, match="baselines"):
        TrainConfig(baselines=("probe",))


@pytest.mark.parametrize("head", ["none", "encoder"])
def test_cmbert_trains_on_zero_audio_without_nan(head):
    """Text-only data (zero audio) through CM-BERT's paper scaling: the loss and every gradient
    stay finite (sqrt's infinite slope at 0 used to turn the weights into NaN after one step)."""
    cfg = ModelConfig(model="cmbert", audio_dim=DIM, audio_head=head)
    torch.manual_seed(0)
    net = build_model(cfg).train()
    tok = load_tokenizer("")
    items = [(tuple(s.split()), None) for s in SENTENCES]
    out = net(**prepare_batch(tok, items, cfg, None), labels=torch.tensor([1.0, -1.0]))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    for name, p in net.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


def test_resume_reads_a_bundle_from_before_frame_pool_as_10ms_frames(tmp_path):
    """A bundle without ``frame_pool`` read its frames at 10 ms: resuming with the new default
    retrains a frame model, and never a model that reads no frames."""
    from cmbert_pipe.train import seed_is_current

    exs = examples()
    tc = TrainConfig(epochs=1, batch_size=8, device="cpu", threads=1, baselines=())
    for frames in (False, True):
        cfg = ModelConfig(model="audio", audio_dim=DIM, audio_head="encoder", frames=frames)
        train_seeds(exs, cfg.replace(frame_pool=1), tc, [0], tmp_path / str(frames))
        seed_dir = tmp_path / str(frames) / "seed-0"
        saved = json.loads((seed_dir / "config.json").read_text())
        del saved["frame_pool"]  # as written before the option
        (seed_dir / "config.json").write_text(json.dumps(saved))
        (seed_dir / "checksums.json").unlink()  # hand-edited: its sums no longer hold
        sha = json.loads((seed_dir / "settings.json").read_text()).get("data_sha256")
        current, why = seed_is_current(seed_dir, cfg, tc, sha)
        assert current == (not frames), why
        if frames:
            assert "frame_pool: 1 -> 5" in why
            assert seed_is_current(seed_dir, cfg.replace(frame_pool=1), tc, sha)[0]
        assert load_bundle(seed_dir).config.frame_pool == 1


@pytest.mark.parametrize("model", ["cmbert", "magbert", "cmsbert-clr"])
def test_audio_aux_loss_is_the_weighted_audio_only_objective(model):
    """--audio-aux-weight λ: loss = the model's loss + λ · the objective on Linear(a) alone."""
    torch.manual_seed(0)
    exs = examples(8)
    cfg = ModelConfig(model=model, audio_dim=DIM, audio_head="pool", objective="binary")
    tok = load_tokenizer("")
    batch = prepare_batch(tok, [(x.words, x.word_features) for x in exs], cfg, None,
                          labels=[x.label for x in exs])
    base = build_model(cfg).eval()
    assert base.audio_aux is None
    torch.manual_seed(0)
    aux = build_model(cfg.replace(audio_aux_weight=0.5)).eval()
    aux.load_state_dict(base.state_dict(), strict=False)  # same weights but the aux layer
    out_base, out_aux = base(**batch), aux(**batch)
    torch.testing.assert_close(out_aux.pred, out_base.pred)  # the score is the model's own
    a_logits = out_aux.extras["audio_aux_logits"]
    expected = objective_loss("binary", a_logits, score_from_logits("binary", a_logits),
                              batch["labels"])
    torch.testing.assert_close(out_aux.loss, out_base.loss + 0.5 * expected)
    with pytest.raises(ConfigError, match="audio_aux_weight"):
        ModelConfig(model="audio", audio_aux_weight=0.5)


def test_audio_aux_model_trains_saves_loads_and_predicts(tmp_path):
    exs = examples()
    cfg = ModelConfig(model="cmbert", audio_dim=DIM, audio_head="encoder", frames=True,
                      objective="binary", audio_aux_weight=1.0)
    tc = TrainConfig(epochs=1, batch_size=8, device="cpu", threads=1, lr_fusion=1e-3,
                     baselines=())
    summary = train_seeds(exs, cfg, tc, [0], tmp_path / "run")
    bundle = load_bundle(tmp_path / "run" / "seed-0")
    assert bundle.config.audio_aux_weight == 1.0 and bundle.model.audio_aux is not None
    metrics, _ = evaluate_bundle_with_notes(tmp_path / "run" / "seed-0", exs, ["test"], "cpu")
    assert metrics["test"] == summary.per_seed[0].metrics["test"]


# -- starting from the audio-only model (--audio-start) ---------------------------------------
@pytest.mark.parametrize("model", ["cmbert", "magbert", "cmsbert-clr"])
def test_audio_start_predicts_exactly_the_audio_only_model(model):
    """After start_from_audio the fusion model's scores are the audio-only model's (eval mode),
    whatever its text; zero audio still adds nothing through the late logits."""
    torch.manual_seed(0)
    exs = examples(8)
    cfg = ModelConfig(model=model, audio_dim=DIM, audio_head="encoder", frames=True,
                      objective="binary", audio_start=True)
    tok = load_tokenizer("")
    items = [(x.words, x.word_features, x.frames) for x in exs]
    audio = build_model(ModelConfig(model="audio", audio_dim=DIM, audio_head="encoder",
                                    frames=True, objective="binary")).eval()
    with torch.no_grad():  # an audio-only model with weights of its own, not the init
        for p in audio.parameters():
            p.add_(0.05 * torch.randn_like(p))
    net = build_model(cfg).eval()
    with torch.no_grad():
        before = net(**prepare_batch(tok, items, cfg, None)).pred
    net.start_from_audio(audio)
    with torch.no_grad():
        b = prepare_batch(tok, items, cfg, None)
        want = audio(**b).pred
        got = net(**b).pred
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert not torch.allclose(before, want)
    # the audio logits come from a bias-free layer: zero audio gives the model's own logits
    with torch.no_grad():
        silent = prepare_batch(tok, [(w, None, None) for w, _, _ in items], cfg, None)
        out = net(**silent)
    assert torch.count_nonzero(out.extras["audio_logits"]) == 0


def test_audio_start_refuses_a_different_audio_model():
    cfg = ModelConfig(model="magbert", audio_dim=DIM, audio_head="encoder", audio_start=True)
    net = build_model(cfg)
    other = build_model(ModelConfig(model="audio", audio_dim=DIM, audio_head="pool"))
    with pytest.raises(ConfigError, match="audio_head"):
        net.start_from_audio(other)
    with pytest.raises(ConfigError, match="audio_start"):
        build_model(cfg.replace(audio_start=False)).start_from_audio(other)
    with pytest.raises(ConfigError, match="audio_start"):
        ModelConfig(model="tbert", audio_start=True)
    with pytest.raises(ConfigError, match="audio_start"):
        ModelConfig(model="cmbert", audio_start=True)  # no acoustic head


def test_audio_start_trains_the_audio_model_first_and_keeps_it_when_dev_says_so(tmp_path):
    """train_seeds trains OUT/baselines/audio first; the start is scored on dev as "epoch -1";
    with updates too small to change anything no epoch beats it, so the saved model is the
    start and scores exactly what the audio-only model scores."""
    exs = examples()
    cfg = ModelConfig(model="cmbert", audio_dim=DIM, audio_head="encoder", frames=True,
                      objective="binary", audio_norm="speaker", audio_start=True)
    tc = TrainConfig(epochs=2, batch_size=8, device="cpu", threads=1, lr_fusion=1e-3,
                     patience=3, seeds=(0,))
    summary = train_seeds(exs, cfg, tc, [0], tmp_path / "run")
    base = summary.baselines["audio"]
    assert (tmp_path / "run" / "baselines" / "audio" / "seed-0" / "model.safetensors").is_file()
    # the start is a candidate: the saved model's dev loss is at most the start's, which is
    # the audio-only model's own dev loss (same weights, same dev clips)
    dev_loss = json.loads((tmp_path / "run" / "seed-0" / "metrics.json").read_text())["dev"]
    start_dev = json.loads((tmp_path / "run" / "baselines" / "audio" / "seed-0" /
                            "metrics.json").read_text())["dev"]
    assert dev_loss["loss"] <= start_dev["loss"] + 1e-6
    bundle = load_bundle(tmp_path / "run" / "seed-0")
    assert bundle.config.audio_start and bundle.model.audio_out is not None
    metrics, _ = evaluate_bundle_with_notes(tmp_path / "run" / "seed-0", exs, ["test"], "cpu")
    assert metrics["test"] == summary.per_seed[0].metrics["test"]
    # resume: nothing is retrained, neither the start nor the model
    again = train_seeds(exs, cfg, tc, [0], tmp_path / "run")
    assert again.per_seed[0].resumed and again.baselines["audio"].per_seed[0].resumed
    # updates below float32 resolution: the start is never beaten and is what is saved
    frozen = TrainConfig(epochs=2, batch_size=8, device="cpu", threads=1, lr_head=1e-12,
                         lr_encoder=1e-12, lr_fusion=1e-12, patience=3, seeds=(0,))
    kept = train_seeds(exs, cfg, frozen, [0], tmp_path / "kept")
    assert kept.per_seed[0].best_epoch == -1
    assert kept.per_seed[0].metrics["test"] == kept.baselines["audio"].per_seed[0].metrics["test"]
    assert base.per_seed[0].metrics["test"]["n"] == 5


def test_audio_start_needs_audio(tmp_path):
    exs = [Example(x.id, x.words, None, x.label, x.split) for x in examples()]
    cfg = ModelConfig(model="magbert", audio_dim=DIM, audio_head="pool", audio_start=True)
    with pytest.raises(ConfigError, match="audio_start needs audio"):
        train_seeds(exs, cfg, TrainConfig(epochs=1, device="cpu", threads=1), [0],
                    tmp_path / "t")
