"""RunConfig checks and coerces every option when built: from a dict, a YAML file, flags or the Python API."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

import transferkit
from transferkit.config import RunConfig, load_yaml
from transferkit.errors import ConfigError

REQUIRED = {"data": "demo:digits", "model": "tiny-cnn"}

#: (option, bad value): every range and type rule, each refused in one line naming the option.
BAD = [
    ("seed", -1), ("seed", 2**32), ("seed", 1.5), ("seed", "abc"),
    ("num_workers", -1), ("num_workers", "two"),
    ("weight_decay", -5), ("weight_decay", float("inf")), ("weight_decay", float("nan")), ("weight_decay", "heavy"),
    ("patience", -1), ("patience", 2.5),
    ("batch_size", 0), ("batch_size", -8), ("batch_size", 3.5), ("batch_size", True),
    ("epochs", 0), ("epochs", "many"),
    ("image_size", 100000), ("image_size", 4), ("image_size", 0),
    ("max_length", 0), ("max_length", 10000),
    ("lr", 0), ("lr", -0.1), ("lr", "fast"), ("lr", float("inf")), ("lr", float("nan")), ("lr", "nan"), ("lr", [1e-3]),
    ("val_fraction", 1.0), ("val_fraction", -0.1), ("test_fraction", 1.5), ("test_fraction", "half"),
    ("train_per_class", 0),
    ("devices", 0), ("num_nodes", 0), ("num_nodes", "all"),
    ("tracker", "mlfow"), ("task", "clustering"), ("precision", "16"), ("accelerator", "tpu"),
    ("augment", "heavy"), ("augment", False),
    ("skip_bad_files", "maybe"), ("skip_bad_files", 2),
    ("strategy_options", [1, 2]), ("data", None), ("model", 12.5j),
]


def _names_option(message: str, name: str) -> bool:
    """The message names the option as a flag or as its YAML/Python key ('Unknown tracker' for choices)."""
    return any(form in message for form in (f"--{name.replace('_', '-')}", name, name.replace("_", " ")))


@pytest.mark.parametrize(("name", "value"), BAD, ids=[f"{n}={v!r}" for n, v in BAD])
def test_bad_value_is_refused_by_from_dict_naming_the_option(name, value):
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict({**REQUIRED, name: value})
    message = str(info.value)
    assert "\n" not in message and _names_option(message, name), message


YAML_BAD = [(n, v) for n, v in BAD if not isinstance(v, complex)] + [
    ("lr", "1e-3 per step"), ("seed", ".inf"), ("patience", "yes"), ("augment", "no"), ("batch_size", "3.5"),
]


@pytest.mark.parametrize(("name", "value"), YAML_BAD, ids=[f"{n}={v!r}" for n, v in YAML_BAD])
def test_bad_value_in_a_yaml_file_is_refused_naming_the_option(tmp_path, name, value):
    config = tmp_path / "config.yaml"
    # Strings are written as a user types them (`lr: fast`, `patience: yes`), so PyYAML's own reading applies.
    line = f"{name}: {value}\n" if isinstance(value, str) else yaml.safe_dump({name: value})
    config.write_text(yaml.safe_dump({k: v for k, v in REQUIRED.items() if k != name}) + line)
    with pytest.raises(ConfigError) as info:
        transferkit.build_config(config)
    message = str(info.value)
    assert "\n" not in message and _names_option(message, name), message


def test_messages_say_what_the_option_takes():
    cases = {
        ("lr", "fast"): "--lr must be a finite number > 0, got 'fast'.",
        ("seed", -1): "--seed must be an integer in [0, 4294967295], got -1.",
        ("image_size", 100000): "--image-size (image_size) must be an integer in [8, 4096], got 100000.",
        ("weight_decay", -5): "--weight-decay (weight_decay) must be a finite number >= 0, got -5.",
        ("epochs", 3.5): "--epochs must be a positive integer, got 3.5.",
        ("val_fraction", 1): "--val-fraction (val_fraction) must be a finite number in [0, 1), got 1.",
    }
    for (name, value), expected in cases.items():
        with pytest.raises(ConfigError) as info:
            RunConfig.from_dict({**REQUIRED, name: value})
        assert str(info.value) == expected


def test_a_choice_lists_the_choices_and_the_closest_match():
    with pytest.raises(ConfigError, match=r"^Unknown tracker 'mlfow'\. Did you mean 'mlflow'\? "
                                          r"Choose one of: csv, tensorboard, mlflow\.$"):
        RunConfig.from_dict({**REQUIRED, "tracker": "mlfow"})
    with pytest.raises(ConfigError, match=r"^Unknown accelerator 'tpu'\. Choose one of: auto, cpu, gpu\.$"):
        RunConfig.from_dict({**REQUIRED, "accelerator": "tpu"})  # no guess among three listed names


def test_a_yaml_boolean_given_to_a_choice_says_to_quote_it(tmp_path):
    (tmp_path / "c.yaml").write_text("data: x\nmodel: tiny-cnn\naugment: no\n")
    with pytest.raises(ConfigError, match=r"Unknown augment False \(YAML reads unquoted yes/no/on/off as "
                                          r"true/false; quote the value\)\. Choose one of: none, light, standard"):
        transferkit.build_config(tmp_path / "c.yaml")


def test_fractions_must_leave_training_data():
    with pytest.raises(ConfigError, match=r"--val-fraction \+ --test-fraction must stay below 1 .* got 0\.5 \+ 0\.5"):
        RunConfig.from_dict({**REQUIRED, "val_fraction": 0.5, "test_fraction": 0.5})
    assert RunConfig.from_dict({**REQUIRED, "val_fraction": 0.5, "test_fraction": 0.49}).test_fraction == 0.49


def test_yaml_values_are_coerced_to_the_option_types(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "data: x\nmodel: tiny-cnn\nlr: 1e-3\nweight-decay: 5e-4\nepochs: 3.0\nseed: '7'\nprecision: 32\n"
        "skip_bad_files: 'yes'\npatience: null\nimage_size: 6.4e1\n")
    assert isinstance(load_yaml(tmp_path / "c.yaml")["lr"], str)  # what PyYAML makes of `1e-3`
    config = transferkit.build_config(tmp_path / "c.yaml")
    assert config.lr == 1e-3 and isinstance(config.lr, float)
    assert config.weight_decay == 5e-4
    assert config.epochs == 3 and type(config.epochs) is int
    assert config.seed == 7 and type(config.seed) is int
    assert config.precision == "32" and config.skip_bad_files is True
    assert config.patience is None and config.image_size == 64 and type(config.image_size) is int


@pytest.mark.parametrize(("value", "expected"), [
    (True, True), ("true", True), ("Yes", True), ("on", True), (1, True),
    (False, False), ("false", False), ("NO", False), ("off", False), (0, False),
])
def test_booleans_from_yaml_strings_and_numbers(value, expected):
    assert RunConfig.from_dict({**REQUIRED, "skip_bad_files": value}).skip_bad_files is expected


def test_python_values_are_coerced_too():
    config = transferkit.build_config(data=Path("/data/imgs"), model="tiny-cnn", batch_size=np.int64(16),
                                      lr=np.float32(0.5), epochs=2.0, out=Path("runs/a"))
    assert config.data == "/data/imgs" and config.out == "runs/a"  # saved to YAML as text, not as a Path
    assert type(config.batch_size) is int and config.batch_size == 16
    assert type(config.lr) is float and config.lr == 0.5 and type(config.epochs) is int
    assert yaml.safe_load(yaml.safe_dump(config.to_dict())) == config.to_dict()


def test_replace_is_checked_like_construction():
    config = RunConfig(**REQUIRED)
    assert config.replace(lr="0.01").lr == 0.01
    with pytest.raises(ConfigError, match="--batch-size"):
        config.replace(batch_size=0)


def test_bounds_are_inclusive_where_they_say_so():
    config = RunConfig.from_dict({**REQUIRED, "seed": 2**32 - 1, "image_size": 8, "max_length": 8192,
                                  "num_workers": 0, "patience": 0, "weight_decay": 0, "val_fraction": 0,
                                  "test_fraction": 0})
    assert (config.seed, config.image_size, config.max_length, config.patience) == (2**32 - 1, 8, 8192, 0)
    assert RunConfig.from_dict({**REQUIRED, "image_size": 4096}).image_size == 4096


def test_options_expose_type_range_choices_and_help():
    specs = {spec.name: spec for spec in RunConfig.options()}
    assert set(specs) == set(RunConfig.__dataclass_fields__)
    assert specs["image_size"].type is int and specs["image_size"].optional
    assert (specs["image_size"].min, specs["image_size"].max) == (8, 4096)
    assert specs["lr"].above == 0 and specs["val_fraction"].below == 1
    assert specs["tracker"].choices == ("csv", "tensorboard", "mlflow")
    assert specs["batch_size"].default == 32 and specs["batch_size"].flag == "--batch-size"
    assert all(spec.help for spec in specs.values())
    help_lines = RunConfig.field_help()
    assert help_lines["seed"].endswith("(an integer in [0, 4294967295]; default: 0)")
    assert "one of: none, light, standard; default: none" in help_lines["augment"]
    assert RunConfig.__dataclass_fields__["image_size"].metadata["max"] == 4096


def test_a_registered_tracker_is_a_valid_choice():
    from transferkit.tracking import TRACKERS, Tracker, register_tracker

    class Quiet(Tracker):
        name = "quiet-test-tracker"

    register_tracker(Quiet())
    try:
        assert RunConfig.from_dict({**REQUIRED, "tracker": "quiet-test-tracker"}).tracker == "quiet-test-tracker"
    finally:
        TRACKERS._entries.pop("quiet-test-tracker")


@pytest.mark.parametrize(("flags", "needle"), [
    (["--seed", "-1"], "--seed must be an integer in [0, 4294967295], got -1."),
    (["--weight-decay", "-5"], "--weight-decay (weight_decay) must be a finite number >= 0, got -5.0."),
    (["--num-workers", "-1"], "--num-workers (num_workers) must be an integer >= 0, got -1."),
    (["--image-size", "100000"], "--image-size (image_size) must be an integer in [8, 4096], got 100000."),
    (["--lr", "inf"], "--lr must be a finite number > 0, got inf."),
])
def test_bad_flags_end_in_one_line_before_anything_is_written(cli_error, tmp_path, flags, needle):
    message = cli_error("fit", "--data", tmp_path / "none", "--model", "tiny-cnn", *flags, "--out", tmp_path / "r")
    assert needle in message
    assert not (tmp_path / "r").exists()


def test_yaml_lr_written_like_a_paper_trains(tmp_path, color_images):
    (tmp_path / "c.yaml").write_text(f"data: {color_images}\nmodel: tiny-cnn\nstrategy: full\nlr: 1e-3\n"
                                     "epochs: 1.0\nimage_size: 16\n")
    run = transferkit.fit(tmp_path / "c.yaml", out=str(tmp_path / "r"), progress=False)
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert saved["lr"] == 1e-3 and saved["epochs"] == 1 and math.isfinite(run.metrics["test"]["accuracy"])
