"""The domain-adaptation building blocks on hand-made tensors: gradient reversal, schedule, CORAL, MMD, DANN."""

from __future__ import annotations

import pytest
import torch

from transferkit.evaluation.domain_gap import proxy_a_distance
from transferkit.strategies import create_strategy
from transferkit.strategies.dann import DISCRIMINATOR
from transferkit.strategies.domain import coral_loss, dann_schedule, mmd_loss, reverse_gradient
from transferkit.model import TransferModel, make_head

DIMS = 16


def features(n: int = 64, shift: float = 0.0, scale: float = 1.0, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, DIMS, generator=gen) * scale + shift


@pytest.mark.parametrize("coeff", [1.0, 0.25, 3.0])
def test_gradient_reversal_is_identity_forward_and_flips_and_scales_the_gradient(coeff):
    x = features(8).requires_grad_(True)
    weights = features(8, seed=1)
    y = reverse_gradient(x, coeff)
    assert torch.equal(y, x)
    (y * weights).sum().backward()
    torch.testing.assert_close(x.grad, -coeff * weights)


def test_dann_schedule_ramps_from_zero_to_almost_one():
    assert dann_schedule(0.0) == 0.0
    values = [dann_schedule(p / 10) for p in range(11)]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert dann_schedule(0.1) == pytest.approx(2 / (1 + torch.e ** -1) - 1)
    assert dann_schedule(1.0) == pytest.approx(0.99991, abs=1e-5)


def test_coral_is_zero_for_identical_batches_and_grows_with_a_covariance_shift():
    source = features()
    assert coral_loss(source, source.clone()).item() == pytest.approx(0.0, abs=1e-9)
    small, large = coral_loss(source, features(scale=1.5, seed=1)), coral_loss(source, features(scale=3.0, seed=1))
    assert 0 < small.item() < large.item()
    # Deep CORAL's scale: ||C_s - C_t||_F^2 / (4 d^2).
    expected = (torch.cov(source.T) - torch.cov(features(scale=3.0, seed=1).T)).pow(2).sum() / (4 * DIMS ** 2)
    assert large.item() == pytest.approx(expected.item(), rel=1e-5)


def test_coral_of_a_single_sample_is_zero_not_nan():
    assert coral_loss(features(1), features(5)).item() == 0.0


def test_mmd_is_zero_for_identical_batches_and_larger_for_a_larger_shift():
    source = features()
    assert mmd_loss(source, source.clone()).item() == pytest.approx(0.0, abs=1e-6)
    same_distribution = mmd_loss(source, features(seed=1)).item()
    shifted = mmd_loss(source, features(shift=0.5, seed=1)).item()
    far = mmd_loss(source, features(shift=2.0, seed=1)).item()
    assert 0 < same_distribution < shifted < far


def test_mmd_gradient_pulls_the_domains_together():
    source, target = features(), features(shift=1.0, seed=1).requires_grad_(True)
    mmd_loss(source, target).backward()
    with torch.no_grad():
        moved = target - 0.5 * target.grad / target.grad.norm() * target.shape[0] ** 0.5
    assert mmd_loss(source, moved).item() < mmd_loss(source, target.detach()).item()


def _dann_model(strategy):
    from transferkit.backbones import create_backbone

    backbone = create_backbone("tiny-cnn")
    model = TransferModel(backbone, make_head("linear", backbone.num_features, 3))
    strategy.prepare(model)
    return model


def _wide(n: int, width: int, shift: float = 0.0, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, width, generator=torch.Generator().manual_seed(seed)) + shift


def test_dann_domain_loss_is_finite_trains_the_discriminator_and_reverses_the_features_gradient():
    strategy = create_strategy("dann", {"dann_weight": 0.5, "probe_init": False})
    model = _dann_model(strategy)
    discriminator = getattr(model, DISCRIMINATOR).eval()  # no dropout: the same network in both passes below
    strategy.on_train_step(30, 100)
    assert strategy.adversarial_weight() == pytest.approx(0.5 * dann_schedule(0.3))
    width = model.backbone.num_features
    source, target = _wide(8, width).requires_grad_(True), _wide(8, width, shift=3.0, seed=1)

    terms = strategy.extra_loss(model, None, {"features": source, "target_domain_features": target})
    assert set(terms) == {"loss/dann"}
    assert torch.isfinite(terms["loss/dann"]) and terms["loss/dann"].item() > 0
    terms["loss/dann"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in discriminator.parameters())

    # The discriminator minimises its loss; the features receive its gradient times -weight.
    plain_source = source.detach().clone().requires_grad_(True)
    logits = discriminator(torch.cat([plain_source, target])).squeeze(-1)
    torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.cat([torch.ones(8), torch.zeros(8)])).backward()
    assert plain_source.grad.abs().sum() > 0
    torch.testing.assert_close(source.grad, -strategy.adversarial_weight() * plain_source.grad)


def test_dann_trains_the_discriminator_but_exports_the_plain_model():
    strategy = create_strategy("dann", {"probe_init": False})
    model = _dann_model(strategy)
    groups = {g.name: g for g in strategy.param_groups(model)}
    assert {id(p) for p in groups[DISCRIMINATOR].params} == {id(p) for p in getattr(model, DISCRIMINATOR).parameters()}
    exported = strategy.export_model(model)
    assert not any(k.startswith(DISCRIMINATOR) for k in exported.state_dict())
    assert set(exported.state_dict()) == {k for k in model.state_dict() if not k.startswith(DISCRIMINATOR)}


def test_domain_strategies_refuse_a_batch_without_target_features():
    from transferkit.errors import ConfigError

    strategy = create_strategy("coral", {"probe_init": False})
    with pytest.raises(ConfigError, match="trains on source and target batches together; pass --target-data"):
        strategy.extra_loss(None, None, {"features": features(4)})


@pytest.mark.parametrize(("strategy", "options", "message"), [
    ("dann", {"dann_weight": -1}, r"--dann-weight must be >= 0, got -1\.0\."),
    ("coral", {"coral_weight": -0.5}, r"--coral-weight must be >= 0, got -0\.5\."),
    ("mmd", {"mmd_kernels": 0}, r"--mmd-kernels must be >= 1, got 0\."),
])
def test_bad_domain_options_are_refused_with_their_value(strategy, options, message):
    from transferkit.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        create_strategy(strategy, options)


def test_proxy_a_distance_is_near_zero_for_one_domain_and_two_for_separable_ones():
    same = proxy_a_distance(features(200).numpy(), features(200, seed=1).numpy())
    apart = proxy_a_distance(features(200).numpy(), features(200, shift=3.0, seed=1).numpy())
    assert same < 0.4
    assert apart == pytest.approx(2.0)
