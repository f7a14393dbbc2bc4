"""What each built-in strategy promises beyond the registry-wide contracts, and its option errors."""

from __future__ import annotations

import copy

import pytest
import torch
from conformance_helpers import BACKBONE_NAMES, fit_options, make_batches, make_model, strategy_for, train_briefly

import transferkit
from transferkit.backbones import create_backbone
from transferkit.errors import ConfigError
from transferkit.strategies import STRATEGIES, create_strategy

pytestmark = pytest.mark.filterwarnings("ignore:::lightning")

backbones = pytest.mark.parametrize("backbone", BACKBONE_NAMES)


def _group_trainable(model) -> dict[str, bool | None]:
    """Per backbone group: True (all trainable), False (all frozen), None (mixed: a defect)."""
    states = {}
    for group in model.backbone.layer_groups():
        flags = {p.requires_grad for p in group.parameters()}
        states[group.name] = flags.pop() if len(flags) == 1 else None
    return states


def _prepared(strategy: str, backbone: str, **options):
    model = make_model(backbone)
    strat = strategy_for(strategy, **options)
    strat.validate(model, {})
    strat.prepare(model)
    return model, strat


# ---- partial ----------------------------------------------------------------------------------
@backbones
@pytest.mark.parametrize(("freeze", "frozen"), [(0, 0), (1, 1), (2, 2), (3, 3), (1 / 3, 1), (0.5, 2), (0.66, 2)])
def test_partial_freezes_exactly_the_first_k_groups(backbone, freeze, frozen):
    model, strategy = _prepared("partial", backbone, freeze=freeze)
    names = strategy.group_names(model)
    assert len(names) == 3
    assert _group_trainable(model) == {n: i >= frozen for i, n in enumerate(names)}
    assert all(p.requires_grad for p in model.head.parameters())
    assert [g.name for g in strategy.param_groups(model)][1:] == [f"backbone.{n}" for n in names[frozen:]]


def test_partial_refuses_to_freeze_more_groups_than_the_backbone_has():
    with pytest.raises(ConfigError, match=r"--freeze 4 is more than the backbone's 3 layer groups\."):
        _prepared("partial", "tiny-cnn", freeze=4)


def test_partial_head_warmup_holds_the_groups_back():
    model, strategy = _prepared("partial", "tiny-cnn", freeze=1, head_warmup=2)
    assert not any(_group_trainable(model).values())
    assert strategy.on_epoch_start(model, 1) == []
    assert [g.name for g in strategy.on_epoch_start(model, 2)] == ["backbone.block1", "backbone.block2"]


# ---- gradual ----------------------------------------------------------------------------------
@backbones
def test_gradual_unfreezes_one_more_group_every_n_epochs_from_the_top(backbone):
    model, strategy = _prepared("gradual", backbone, unfreeze_every=2)
    top_down = list(reversed(strategy.group_names(model)))
    assert not any(_group_trainable(model).values())
    for epoch in range(9):
        added = [g.name for g in strategy.on_epoch_start(model, epoch)]
        unfrozen = top_down[:min(len(top_down), epoch // 2)]
        newly = unfrozen[-1:] if epoch % 2 == 0 and 0 < epoch // 2 <= len(top_down) else []
        assert added == [f"backbone.{n}" for n in newly], f"epoch {epoch}"
        assert _group_trainable(model) == {n: n in unfrozen for n in top_down}, f"epoch {epoch}"
        assert strategy.state_dict()["unfrozen"] == unfrozen


def test_gradual_gives_lower_groups_smaller_learning_rates():
    model, strategy = _prepared("gradual", "tiny-cnn", unfreeze_every=1, backbone_lr_scale=0.5, layer_decay=0.8)
    for epoch in range(4):
        strategy.on_epoch_start(model, epoch)
    scales = {g.name: g.lr_scale for g in strategy.param_groups(model)}
    assert scales == pytest.approx({"head": 1.0, "backbone.block2": 0.5, "backbone.block1": 0.4,
                                    "backbone.stem": 0.32})


# ---- full -------------------------------------------------------------------------------------
def test_full_with_head_warmup_trains_only_the_head_in_epoch_zero():
    model, strategy = _prepared("full", "tiny-cnn", head_warmup=1)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"head.weight", "head.bias"}
    assert strategy.on_epoch_start(model, 0) == []
    assert [g.name for g in strategy.on_epoch_start(model, 1)] == [
        "backbone.block2", "backbone.block1", "backbone.stem"]
    assert all(p.requires_grad for p in model.parameters())


def test_full_head_warmup_leaves_the_backbone_untouched_in_its_epochs():
    run = train_briefly(make_model("tiny-cnn"), strategy_for("full", head_warmup=1), make_batches("tiny-cnn"), epochs=1)
    for name, p in run.model.named_parameters():
        assert torch.equal(p, run.params_before[name]) != name.startswith("head."), name


# ---- l2sp -------------------------------------------------------------------------------------
def test_l2sp_penalty_is_alpha_half_squared_distance_to_the_pretrained_weights():
    model, strategy = _prepared("l2sp", "tiny-cnn", alpha=0.3, beta=0.0, head_warmup=0)
    outputs = {"logits": torch.zeros(2, 3)}
    assert strategy.extra_loss(model, None, outputs)["loss/l2sp"].item() == 0.0
    weight = model.backbone.block1[0].weight
    with torch.no_grad():
        weight.add_(0.1)
    expected = 0.3 / 2 * 0.1 ** 2 * weight.numel()
    assert strategy.extra_loss(model, None, outputs)["loss/l2sp"].item() == pytest.approx(expected, rel=1e-4)
    weight.requires_grad_(False)  # a frozen weight is not pulled back (it cannot move)
    assert strategy.extra_loss(model, None, outputs)["loss/l2sp"].item() == 0.0


def test_l2sp_head_penalty_is_beta_half_squared_head_weights():
    model, strategy = _prepared("l2sp", "tiny-cnn", alpha=0.0, beta=0.2)
    terms = strategy.extra_loss(model, None, {"logits": torch.zeros(2, 3)})
    assert terms["loss/head_l2"].item() == pytest.approx(0.1 * model.head.weight.pow(2).sum().item(), rel=1e-5)


def test_l2sp_penalty_grows_during_training(trained):
    run = trained("l2sp", "tiny-cnn")
    terms = run.strategy.extra_loss(run.model, None, {"logits": torch.zeros(2, 3)})
    assert terms["loss/l2sp"].item() > 0


def test_l2sp_replaces_weight_decay():
    model, strategy = _prepared("l2sp", "tiny-cnn", head_warmup=0)
    assert {g.weight_decay for g in strategy.param_groups(model)} == {0.0}


# ---- scratch and pretrained weights -----------------------------------------------------------
def _convs_equal_to_pretrained(strategy: str, image_folder, out) -> tuple[set[str], list[str]]:
    """(conv weights equal to the pretrained ones, all conv weights) of the backbone `fit` prepares."""
    from transferkit.training.plan import make_plan

    prep = make_plan(transferkit.build_config(**fit_options(image_folder, strategy, out)))
    backbone = prep.strategy.export_model(copy.deepcopy(prep.model)).backbone  # LoRA: adapters merged (B = 0)
    pretrained = create_backbone("tiny-cnn", pretrained=True).state_dict()
    convs = [k for k, v in pretrained.items() if v.ndim == 4]
    return {k for k in convs if torch.equal(backbone.state_dict()[k], pretrained[k])}, convs


@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_backbone_is_pretrained_exactly_when_the_strategy_says_so(strategy, image_folder, tmp_path):
    same, convs = _convs_equal_to_pretrained(strategy, image_folder, tmp_path / "run")
    assert same == (set(convs) if STRATEGIES.get(strategy).uses_pretrained else set())


def test_scratch_does_not_load_pretrained_weights(image_folder, tmp_path):
    same, _ = _convs_equal_to_pretrained("scratch", image_folder, tmp_path / "run")
    assert not same, f"scratch kept pretrained weights in {sorted(same)}"


# ---- feature extraction -----------------------------------------------------------------------
@backbones
def test_feature_extraction_trains_only_the_head(backbone):
    model, strategy = _prepared("feature-extraction", backbone)
    for epoch in range(5):
        assert strategy.on_epoch_start(model, epoch) == []
        assert {n for n, p in model.named_parameters() if p.requires_grad} == {"head.weight", "head.bias"}
    assert [g.name for g in strategy.param_groups(model)] == ["head"]


# ---- lora -------------------------------------------------------------------------------------
@backbones
def test_lora_trains_adapters_and_head_only(backbone):
    model, strategy = _prepared("lora", backbone)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"head.weight", "head.bias"} < trainable
    assert all(n.startswith("head.") or "lora_" in n for n in trainable)
    assert [g.name for g in strategy.param_groups(model)] == ["head", "lora"]


def test_lora_names_the_option_to_fix_a_bad_target():
    with pytest.raises(ConfigError, match=r"LoRA could not wrap tiny-cnn: .* Set --target-modules\."):
        _prepared("lora", "tiny-cnn", target_modules="no_such_layer")


# ---- option errors name the option, the value and the valid range -----------------------------
@pytest.mark.parametrize(("strategy", "options", "message"), [
    ("partial", {"freeze": -1}, r"--freeze must be >= 0 \(a count or a fraction\), got -1\.0\."),
    ("gradual", {"unfreeze_every": 0}, r"--unfreeze-every must be >= 1, got 0\."),
    ("gradual", {"layer_decay": 1.5}, r"--layer-decay must be in \(0, 1\], got 1\.5\."),
    ("full", {"layer_decay": 0}, r"--layer-decay must be in \(0, 1\], got 0\.0\."),
    ("full", {"head_warmup": -1}, r"--head-warmup must be >= 0, got -1\."),
    ("l2sp", {"alpha": -0.1}, r"--alpha must be >= 0, got -0\.1\."),
    ("lora", {"r": 0}, r"--lora-r must be >= 1, got 0\."),
    ("gradual", {"unfreeze_every": "often"}, r"Bad option for strategy 'gradual': invalid literal for int\(\)"),
])
def test_bad_strategy_options_are_refused_with_their_value(strategy, options, message):
    with pytest.raises(ConfigError, match=message):
        create_strategy(strategy, options)
