"""Contracts every registered strategy honours, on every tiny backbone where they apply.

Parametrized over `STRATEGIES.names()`, so a newly registered strategy is held to them at once.
"""

from __future__ import annotations

import copy
from dataclasses import fields
from pathlib import Path

import pytest
import torch
import yaml
from conformance_helpers import BACKBONE_NAMES, EPOCHS, STRATEGY_NAMES, fit_options, make_model, strategy_for
from torch.nn.modules.batchnorm import _BatchNorm

import transferkit
from transferkit.config import RunConfig, load_yaml, save_yaml
from transferkit.errors import ConfigError
from transferkit.strategies import STRATEGIES, create_strategy
from transferkit.training.optim import add_param_groups
from transferkit.training.module import TransferModule

pytestmark = pytest.mark.filterwarnings("ignore:::lightning")

#: Epochs walked through when checking a schedule without training (every group unfreezes by then).
SCHEDULE_EPOCHS = 6
LR, WEIGHT_DECAY = 1e-3, 0.01

strategies = pytest.mark.parametrize("strategy", STRATEGY_NAMES)
backbones = pytest.mark.parametrize("backbone", BACKBONE_NAMES)


def _module(model, strategy, lr: float = LR, weight_decay: float = WEIGHT_DECAY) -> TransferModule:
    return TransferModule(model, strategy, task="classification", lr=lr, weight_decay=weight_decay, total_steps=10)


def _names(model, params) -> set[str]:
    by_id = {id(p): n for n, p in model.named_parameters()}
    return {by_id[id(p)] for p in params}


def _trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def _walk_schedule(strategy_name: str, backbone: str):
    """Yield (epoch, model, strategy, optimizer) as the training path would see them at each epoch start."""
    model = make_model(backbone)
    strategy = strategy_for(strategy_name)
    strategy.prepare(model)
    configured = _module(model, strategy).configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    for epoch in range(SCHEDULE_EPOCHS):
        add_param_groups(optimizer, strategy.on_epoch_start(model, epoch), LR, WEIGHT_DECAY, scheduler)
        yield epoch, model, strategy, optimizer


def _describe(optimizer) -> list[tuple]:
    """What a resumed optimizer must reproduce: group names, order, learning rates and shapes."""
    return [(g["name"], g["initial_lr"], g["weight_decay"], [tuple(p.shape) for p in g["params"]])
            for g in optimizer.param_groups]


# ---- 1. the optimizer holds exactly the trainable parameters ------------------------------------
@strategies
@backbones
def test_optimizer_holds_exactly_the_trainable_parameters(strategy, backbone):
    for epoch, model, strat, optimizer in _walk_schedule(strategy, backbone):
        in_optimizer = [p for g in optimizer.param_groups for p in g["params"]]
        assert len({id(p) for p in in_optimizer}) == len(in_optimizer), f"epoch {epoch}: a parameter is in two groups"
        held = _names(model, in_optimizer)
        trainable = _trainable(model)
        assert held == trainable, (f"epoch {epoch}: trainable but not optimized {sorted(trainable - held)}; "
                                   f"optimized but frozen {sorted(held - trainable)}")
        scales = {g.name: g.lr_scale for g in strat.param_groups(model) if g.params}
        assert {g["name"]: g["initial_lr"] for g in optimizer.param_groups} == pytest.approx(
            {name: LR * scale for name, scale in scales.items()}), f"epoch {epoch}"


# ---- 2. after a few steps only trainable parameters changed -------------------------------------
@strategies
@backbones
def test_only_trainable_parameters_change(strategy, backbone, trained):
    run = trained(strategy, backbone)
    changed = {n for n, p in run.model.named_parameters() if not torch.equal(p.detach(), run.params_before[n])}
    assert any(n.startswith("head.") for n in run.ever_trainable)
    assert changed <= run.ever_trainable, f"frozen parameters changed: {sorted(changed - run.ever_trainable)}"
    assert run.ever_trainable <= changed, f"trainable parameters never updated: {sorted(run.ever_trainable - changed)}"


# ---- 3. BatchNorm statistics of frozen parts do not move ----------------------------------------
@strategies
@pytest.mark.parametrize("start_mode", ["train", "eval"])
@pytest.mark.parametrize("bn_stats", ["default", "trained"])
def test_frozen_batchnorm_statistics_do_not_move(strategy, start_mode, bn_stats, trained):
    """Frozen layers keep their statistics; trained ones update theirs unless the strategy fixes them all.

    `eval` start: the linear probe's feature pass leaves the model in eval mode before training.
    `trained`: the strategy's `train_bn_stats` option on, for strategies that have one.
    """
    options = {}
    if bn_stats == "trained":
        if "train_bn_stats" not in {f.name for f in fields(STRATEGIES.get(strategy).config_class)}:
            pytest.skip(f"{strategy} has no train_bn_stats option")
        options["train_bn_stats"] = True
    run = trained(strategy, "tiny-cnn", start_mode, **options)
    stats_fixed = getattr(run.model, "freeze_bn_stats", False)
    assert not (bn_stats == "trained" and stats_fixed)
    frozen_moved, trained_still, trained_moved = [], [], []
    for name, module in run.model.named_modules():
        if not isinstance(module, _BatchNorm):
            continue
        moved = not (torch.equal(module.running_mean, run.buffers_before[f"{name}.running_mean"])
                     and torch.equal(module.running_var, run.buffers_before[f"{name}.running_var"]))
        trained_params = {f"{name}.{p}" for p, _ in module.named_parameters(recurse=False)} & run.ever_trainable
        if not trained_params:
            frozen_moved += [name] if moved else []
        else:
            (trained_moved if moved else trained_still).append(name)
    assert not frozen_moved, f"running statistics of frozen BatchNorm layers moved: {frozen_moved}"
    if stats_fixed:
        assert not trained_moved, f"statistics moved although the strategy fixes them: {trained_moved}"
    else:
        assert not trained_still, f"trained BatchNorm layers never updated their statistics: {trained_still}"


# ---- 4. the schedule survives save and resume ----------------------------------------------------
def _load_checkpoint(out: Path) -> dict:
    return torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


@strategies
def test_checkpoint_rebuilds_the_same_schedule(strategy, image_folder, tmp_path):
    run = transferkit.fit(**fit_options(image_folder, strategy, tmp_path / "run"), progress=False)
    checkpoint = _load_checkpoint(run.folder)
    assert checkpoint["epoch"] == EPOCHS - 1
    state = checkpoint["transferkit_strategy"]
    cfg, n_classes = run.config, checkpoint["state_dict"]["model.head.weight"].shape[0]

    # The schedule as the uninterrupted run stepped through it ...
    reference_model = make_model("tiny-cnn", n_classes=n_classes)
    reference = create_strategy(cfg.strategy, cfg.strategy_options)
    reference.prepare(reference_model)
    reference_optimizer = _module(reference_model, reference, cfg.lr, cfg.weight_decay).configure_optimizers()
    reference_optimizer = reference_optimizer["optimizer"]
    for epoch in range(EPOCHS):
        add_param_groups(reference_optimizer, reference.on_epoch_start(reference_model, epoch), cfg.lr,
                         cfg.weight_decay)

    # ... and as a resumed run rebuilds it from the checkpoint, in Lightning's order.
    model = make_model("tiny-cnn", n_classes=n_classes)
    restored = create_strategy(cfg.strategy, cfg.strategy_options)
    restored.prepare(model)
    module = _module(model, restored, cfg.lr, cfg.weight_decay)
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"])
    optimizer = module.configure_optimizers()["optimizer"]

    assert restored.state_dict() == reference.state_dict() == state
    assert _trainable(model) == _trainable(reference_model)
    assert _describe(optimizer) == _describe(reference_optimizer)
    saved_groups = [(g["name"], g["initial_lr"], g["weight_decay"], len(g["params"]))
                    for g in checkpoint["optimizer_states"][0]["param_groups"]]
    assert saved_groups == [(n, lr, wd, len(s)) for n, lr, wd, s in _describe(optimizer)]
    optimizer.load_state_dict(checkpoint["optimizer_states"][0])  # what Lightning does on resume
    assert run.metrics["trainable_params"] == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_last_checkpoint_is_the_last_epoch_with_validation(image_folder, tmp_path):
    # These images are separable from the start: val/accuracy is 1.0 after epoch 0 and cannot improve.
    run = transferkit.fit(**fit_options(image_folder, "gradual", tmp_path / "run", val_fraction=0.25), progress=False)
    assert _load_checkpoint(run.folder)["epoch"] == EPOCHS - 1


class Interrupted(Exception):
    """Stands in for a crash or a killed job in the middle of a run."""


def _interrupt_at(epoch: int):
    import lightning as L

    class InterruptAt(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == epoch:
                raise Interrupted(f"stopped at the start of epoch {epoch}")

    return InterruptAt()


@pytest.fixture(scope="module")
def resumed_gradual(image_folder, tmp_path_factory):
    """(uninterrupted, resumed) runs of gradual over 4 epochs; the second crashed before epoch 2."""
    import transferkit.training.fit as fit_module

    root = tmp_path_factory.mktemp("resume")
    options = fit_options(image_folder, "gradual", root / "uninterrupted", epochs=4)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRANSFERKIT_CACHE", str(root / "cache"))
        reference = transferkit.fit(**options, progress=False)
        original = fit_module.trainer_for

        def interrupting_trainer(*args, **kwargs):
            trainer = original(*args, **kwargs)
            trainer.callbacks.append(_interrupt_at(2))
            return trainer

        mp.setattr(fit_module, "trainer_for", interrupting_trainer)
        with pytest.raises(Interrupted):
            transferkit.fit(**{**options, "out": str(root / "resumed")}, progress=False)
        mp.setattr(fit_module, "trainer_for", original)
        assert not (root / "resumed" / "metrics.json").exists()
        at_crash = _load_checkpoint(root / "resumed")
        resumed = transferkit.resume(root / "resumed", progress=False)
    return reference, resumed, at_crash


def test_interrupted_run_resumes_on_its_schedule(resumed_gradual):
    reference, resumed, at_crash = resumed_gradual
    assert at_crash["epoch"] == 1
    assert at_crash["transferkit_strategy"]["unfrozen"] == ["block2"]
    assert [g["name"] for g in at_crash["optimizer_states"][0]["param_groups"]] == ["head", "backbone.block2"]
    expected, got = _load_checkpoint(reference.folder), _load_checkpoint(resumed.folder)
    assert got["epoch"] == expected["epoch"] == 3
    assert got["global_step"] == expected["global_step"]
    assert got["transferkit_strategy"] == expected["transferkit_strategy"]
    assert got["transferkit_strategy"]["unfrozen"] == ["block2", "block1", "stem"]

    def groups(ckpt):
        return [(g["name"], g["initial_lr"], len(g["params"])) for g in ckpt["optimizer_states"][0]["param_groups"]]

    assert groups(got) == groups(expected)
    assert [g["name"] for g in got["optimizer_states"][0]["param_groups"]] == [
        "head", "backbone.block2", "backbone.block1", "backbone.stem"]
    assert resumed.metrics["groups"] == reference.metrics["groups"]


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(resumed_gradual):
    """Epoch e draws the same batches whether or not the run stopped before it (no dropout here)."""
    reference, resumed, _ = resumed_gradual
    expected = _load_checkpoint(reference.folder)["state_dict"]
    got = _load_checkpoint(resumed.folder)["state_dict"]
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_resumed_run_keeps_the_history_of_every_epoch(resumed_gradual):
    import pandas as pd

    reference, resumed, _ = resumed_gradual
    assert resumed.metrics["epochs_run"] == reference.metrics["epochs_run"] == 4
    assert pd.read_csv(resumed.folder / "history.csv")["epoch"].tolist() == [0, 1, 2, 3]


# ---- 5. configs round-trip through YAML ----------------------------------------------------------
def _changed_options(strategy: str) -> dict:
    """A non-default value for every option of the strategy's config (by its annotated type)."""
    options = {}
    for f in fields(STRATEGIES.get(strategy).config_class):
        value, kind = f.default, str(f.type)
        if kind.startswith("bool"):
            options[f.name] = not value
        elif kind.startswith("int"):
            options[f.name] = (value or 0) + 1
        elif kind.startswith("float"):
            options[f.name] = value / 2 if value else 0.5
        else:
            options[f.name] = "block1.0"
    return options


@strategies
def test_run_config_round_trips_through_yaml(strategy, tmp_path):
    from transferkit.training.plan import complete_config

    target = {"target_data": "demo:mnist"} if STRATEGIES.get(strategy).needs_target_data else {}
    config, _ = complete_config(transferkit.build_config(data="demo:digits", model="tiny-cnn", strategy=strategy,
                                                         out=str(tmp_path / "run"), **target, **_changed_options(strategy)))
    save_yaml(config.to_dict(), tmp_path / "config.yaml")
    loaded = RunConfig.from_dict(load_yaml(tmp_path / "config.yaml"))
    assert loaded == config
    assert create_strategy(strategy, loaded.strategy_options).config == create_strategy(
        strategy, _changed_options(strategy)).config


@strategies
@pytest.mark.parametrize("which", ["defaults", "changed"])
def test_strategy_config_round_trips(strategy, which):
    cls = STRATEGIES.get(strategy).config_class
    config = cls() if which == "defaults" else cls.from_options(_changed_options(strategy), strategy)
    assert cls.from_options(config.to_dict(), strategy) == config
    assert cls.from_options(yaml.safe_load(yaml.safe_dump(config.to_dict())), strategy) == config


@strategies
def test_unknown_strategy_option_is_refused_with_a_suggestion(strategy, tmp_path):
    names = [f.name for f in fields(STRATEGIES.get(strategy).config_class)]
    if names:
        typo, expected = names[0][0] + names[0], rf"Did you mean .*'{names[0]}'"
    else:
        typo, expected = "freeze", "It takes none"
    with pytest.raises(ConfigError, match=rf"Strategy '{strategy}' has no option '{typo}'\.( .*)?{expected}"):
        transferkit.fit(data="demo:digits", model="tiny-cnn", strategy=strategy, out=str(tmp_path / "run"),
                        progress=False, **{typo: 1})
    assert not (tmp_path / "run").exists()


# ---- 6. summary and parameter groups add up -------------------------------------------------------
@strategies
@backbones
def test_summary_and_param_groups_add_up(strategy, backbone):
    for epoch, model, strat, _ in _walk_schedule(strategy, backbone):
        rows = strat.summary(model)
        groups = [r["group"] for r in rows]
        assert all(groups) and len(set(groups)) == len(groups), groups
        assert sum(r["trainable"] for r in rows) == sum(p.numel() for p in model.parameters() if p.requires_grad), \
            f"epoch {epoch}: {rows}"
        assert sum(r["total"] for r in rows) == sum(p.numel() for p in model.parameters()), f"epoch {epoch}: {rows}"
        param_groups = strat.param_groups(model)
        names = [g.name for g in param_groups]
        assert all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names), names
        assert all(g.lr_scale > 0 for g in param_groups)


@backbones
def test_layer_groups_partition_the_backbone(backbone):
    """Strategies freeze and schedule whole groups, so every parameter must be in exactly one."""
    model = make_model(backbone)
    grouped = [id(p) for g in model.backbone.layer_groups() for p in g.parameters()]
    assert sorted(grouped) == sorted(id(p) for p in model.backbone.parameters())


# ---- 7. the exported model is a plain TransferModel that predicts the same -----------------------
@strategies
@backbones
def test_exported_model_loads_into_a_plain_model_and_predicts_the_same(strategy, backbone, trained):
    run = trained(strategy, backbone)
    model, strat = copy.deepcopy(run.model).eval(), copy.deepcopy(run.strategy)
    with torch.no_grad():
        expected = model(run.inputs)
    summary = strat.summary(model)

    exported = strat.export_model(model)
    plain = make_model(backbone, pretrained=False)
    plain.load_state_dict(exported.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(plain.eval()(run.inputs), expected, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(model(run.inputs), expected)  # the trained model is left as it was
    assert strat.summary(model) == summary, "export changed the model the run's summary is read from"



# ---- 8. a strategy that chooses from the data resolves into one that trains ----------------------
RESOLVING = [n for n in STRATEGY_NAMES if STRATEGIES.get(n).chooses_from_data]


@pytest.mark.parametrize("strategy", RESOLVING)
def test_resolving_strategy_chooses_a_registered_strategy_that_trains(strategy):
    from conformance_helpers import synthetic_context

    choice = create_strategy(strategy).choose(synthetic_context())
    assert choice.by == strategy and choice.reasons and all(isinstance(r, str) and r for r in choice.reasons)
    assert choice.strategy in STRATEGY_NAMES and not STRATEGIES.get(choice.strategy).chooses_from_data
    create_strategy(choice.strategy, choice.options)  # its options are valid


@pytest.mark.parametrize("strategy", RESOLVING)
def test_run_records_the_choice_and_saves_the_chosen_strategy(strategy, image_folder, tmp_path):
    run = transferkit.fit(**fit_options(image_folder, strategy, tmp_path / "run"), progress=False)
    choice = run.metrics["strategy_choice"]
    assert choice["by"] == strategy and choice["chose"] == run.metrics["strategy"] == run.config.strategy
    assert load_yaml(run.folder / "config.yaml")["strategy"] == choice["chose"]
    assert dict(run.summary_rows())["strategy"] == f"{choice['chose']} (chosen by {strategy})"
    assert [value for _, value in run.summary_rows()][2:2 + len(choice["reasons"])] == choice["reasons"]
