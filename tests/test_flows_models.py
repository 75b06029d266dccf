"""NICE / RealNVP / Glow: invertibility, exact log-likelihood, bits/dim, training, checkpoints, NaN guard."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import logistic
from test_flows_layers import brute_force_logdet, layer_logdet, one_thread, randomize  # noqa: F401

from sentflow.errors import SentflowError
from sentflow.files.io import load_tensors, save_tensors
from sentflow.files.schemas import FlowHeader
from sentflow.flows import (
    NICE,
    Glow,
    RealNVP,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    build_model,
    evaluate_bpd,
    load_checkpoint,
    load_digits_data,
    read_checkpoint,
    save_checkpoint,
)

TINY = {
    "nice": {"hidden": 16, "depth": 1},
    "realnvp": {"hidden": 8, "scales": 2},
    "glow": {"levels": 2, "steps": 2, "hidden": 8},
}


def tiny(name: str, shape=(1, 8, 8), n_bins: int = 17, seed: int = 0, **extra):
    torch.manual_seed(seed)
    return build_model(name, data_shape=shape, n_bins=n_bins, **TINY[name], **extra)


VARIANTS = [("nice", {}), ("nice", {"prior": "normal"}), ("realnvp", {}), ("glow", {}), ("glow", {"logit": True})]


def discrete(n: int, shape, n_bins: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, n_bins, (n, *shape), generator=gen).float() / n_bins


@pytest.fixture(scope="module")
def digits():
    return load_digits_data()


@pytest.mark.parametrize(("name", "extra"), VARIANTS)
@pytest.mark.parametrize(("shape", "n_bins"), [((1, 8, 8), 17), ((2, 4, 4), 256)])
def test_model_inverse_recovers_discrete_data(name: str, extra: dict, shape, n_bins: int) -> None:
    model = randomize(tiny(name, shape, n_bins, **extra), scale=0.05)
    x = discrete(6, shape, n_bins)
    z, _ = model.flow(x)
    assert z.shape == (6, *model.latent_shape)
    assert torch.allclose(model.flow.inverse(z), x, atol=1e-4)


@pytest.mark.parametrize(("name", "extra"), VARIANTS)
def test_model_logdet_matches_jacobian(name: str, extra: dict) -> None:
    model = randomize(tiny(name, (1, 4, 4), **extra), scale=0.05).double()
    x = discrete(2, (1, 4, 4), 17).double()
    model.flow(discrete(16, (1, 4, 4), 17, seed=1).double())  # ActNorm init
    assert torch.allclose(layer_logdet(model.flow, x), brute_force_logdet(model.flow, x), atol=1e-6)


def test_nice_bits_per_dim_equals_hand_computation() -> None:
    """At initialisation NICE's couplings are the identity, so after dequantization z = y * c with c the
    initial scaling (logistic std / uniform std): log p = sum logistic.logpdf(c * y) + D log c."""
    model = NICE((1, 8, 8), 17, hidden=16, depth=1)
    x = discrete(5, (1, 8, 8), 17)
    torch.manual_seed(7)
    bpd = model.bits_per_dim(x).item()
    torch.manual_seed(7)
    y = (x + torch.rand_like(x) / 17).double().numpy().reshape(5, -1)
    c = (math.pi / math.sqrt(3)) * math.sqrt(12)
    log_p = logistic.logpdf(c * y).sum(1) + 64 * math.log(c)
    expected = np.mean(-(log_p - 64 * math.log(17)) / (64 * math.log(2)))
    assert bpd == pytest.approx(expected, rel=1e-5)


def test_glow_bits_per_dim_is_the_discrete_likelihood_in_bits() -> None:
    """bpd = -(log p(y) - D log n_bins) / (D ln 2), computed from log_prob by hand."""
    model = randomize(tiny("glow"), scale=0.05)
    x = discrete(4, (1, 8, 8), 17)
    model.flow(x)
    torch.manual_seed(3)
    log_p = model.log_prob(x).double()
    torch.manual_seed(3)
    bpd = model.bits_per_dim(x).item()
    assert bpd == pytest.approx((-(log_p - 64 * math.log(17)) / (64 * math.log(2))).mean().item(), rel=1e-5)


def test_samples_are_on_the_data_grid() -> None:
    model = tiny("glow")
    x = model.sample(5, temperature=0.7)
    assert x.shape == (5, 1, 8, 8)
    levels = x * 17
    assert torch.allclose(levels, levels.round(), atol=1e-4) and x.min() >= 0 and x.max() < 1


def _fit(model, data, out=None, **kw) -> Trainer:
    config = TrainConfig(
        **{"epochs": 2, "batch_size": 64, "lr": 3e-3, "warmup_steps": 5, "progress": False, "threads": 1, **kw}
    )
    trainer = Trainer(model, config, out, device=torch.device("cpu"))
    trainer.fit(data)
    return trainer


@pytest.mark.parametrize("name", sorted(TINY))
def test_a_few_steps_on_digits_lower_the_test_bits_per_dim(name: str, digits) -> None:
    model = tiny(name)
    model.flow(digits.train[:256])  # ActNorm init on training data, as the trainer would
    before = evaluate_bpd(model, digits.test)
    _fit(model, digits.train[:512])
    after = evaluate_bpd(model, digits.test)
    assert after < before - 0.05


def test_checkpoint_round_trip_gives_identical_log_probs(tmp_path, digits) -> None:
    model = tiny("glow")
    trainer = _fit(model, digits.train[:256], tmp_path, epochs=1)
    loaded = load_checkpoint(trainer.checkpoint_path)
    assert isinstance(loaded, Glow) and loaded.config == model.config
    assert int(loaded.flow.flows[1].flows[1].initialized) == 1
    x = digits.test[:32]
    model.eval()
    torch.manual_seed(0)
    expected = model.log_prob(x)
    torch.manual_seed(0)
    assert torch.equal(loaded.log_prob(x), expected)


def test_checkpoint_rebuilds_every_model_from_its_meta(tmp_path) -> None:
    for cls, name in [(NICE, "nice"), (RealNVP, "realnvp"), (Glow, "glow")]:
        model = randomize(tiny(name, (1, 4, 4), 256))
        save_checkpoint(tmp_path / f"{name}.safetensors", model)
        ckpt = read_checkpoint(tmp_path / f"{name}.safetensors")
        assert type(ckpt.model) is cls and ckpt.meta.data_shape == [1, 4, 4]
        for a, b in zip(model.state_dict().values(), ckpt.model.state_dict().values(), strict=True):
            assert torch.equal(a, b)


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, digits) -> None:
    data = digits.train[:192]
    straight = _fit(tiny("realnvp"), data, tmp_path / "a", epochs=2)
    first = _fit(tiny("realnvp"), data, tmp_path / "b", epochs=1)
    resumed = Trainer(
        read_checkpoint(first.checkpoint_path).model, first.config, tmp_path / "b", device=torch.device("cpu")
    )
    resumed.config.epochs = 2
    resumed.resume(first.checkpoint_path)
    resumed.fit(data)
    assert resumed.state.step == straight.state.step
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path, digits) -> None:
    trainer = _fit(tiny("glow"), digits.train[:128], tmp_path, epochs=1)
    good = trainer.checkpoint_path.read_bytes()
    bad = digits.train[:128].clone()
    bad[5, 0, 3, 3] = float("nan")
    trainer.config.epochs = 2
    with pytest.raises(TrainingDiverged, match="diverged.*last good checkpoint kept"):
        trainer.fit(bad)
    assert trainer.checkpoint_path.read_bytes() == good


def test_corrupted_and_mismatched_checkpoints_raise_sentflow_errors(tmp_path) -> None:
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01not a checkpoint")
    with pytest.raises(SentflowError, match="garbage.safetensors"):
        load_checkpoint(garbage)
    path = tmp_path / "glow.safetensors"
    save_checkpoint(path, tiny("glow"))
    tensors, header = load_tensors(path, FlowHeader)
    meta = header.model_dump()
    meta["config"]["hidden"] = 32
    save_tensors(tmp_path / "other.safetensors", tensors, meta)
    with pytest.raises(SentflowError, match="the model described by the header needs"):
        load_checkpoint(tmp_path / "other.safetensors")
    meta["model"] = "nosuchflow"
    save_tensors(tmp_path / "unknown.safetensors", tensors, meta)
    with pytest.raises(SentflowError, match="unknown model"):
        load_checkpoint(tmp_path / "unknown.safetensors")


def test_glow_rejects_images_it_cannot_squeeze() -> None:
    with pytest.raises(SentflowError, match="divisible"):
        Glow((1, 6, 6), 17, levels=2)


def test_the_shared_recipe_trains_scores_and_resumes(tmp_path, digits) -> None:
    from dataclasses import replace as with_fields

    from sentflow.flows import train_image_flow

    data = with_fields(digits, train=digits.train[:256], test=digits.test[:128])
    config = TrainConfig(epochs=1, batch_size=64, lr=3e-3, warmup_steps=5, progress=False, threads=1, seed=3)
    first = train_image_flow(tiny("nice"), data, config, tmp_path)
    assert first.state.epoch == 1 and not first.diverged
    assert first.test_bpd == pytest.approx(evaluate_bpd(first.model, data.test, seed=3), abs=1e-9)
    more = with_fields(config, epochs=2)
    resumed = train_image_flow(tiny("nice"), data, more, tmp_path, resume_from=tmp_path / "checkpoint.safetensors")
    assert resumed.state.epoch == 2 and resumed.state.step == 2 * first.state.step
    assert train_image_flow(tiny("nice"), data, config, evaluate=False).test_bpd is None


def test_every_model_declares_bounds_for_each_constructor_option():
    import inspect

    from sentflow.flows.models import MODELS

    for name, cls in MODELS.items():
        options = set(inspect.signature(cls.__init__).parameters) - {"self"}
        assert set(cls._parameter_constraints) == options, name
