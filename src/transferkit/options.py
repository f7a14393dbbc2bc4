"""`build_config`: a RunConfig from a YAML file or a RunConfig, with keyword options on top.

The one place where flat options (the CLI's flags, the Python API's keywords) are split into run
fields and strategy options.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from transferkit.config import RunConfig, load_yaml

_RUN_FIELDS = {f.name for f in fields(RunConfig)}


def build_config(config: RunConfig | str | Path | None = None, **options: Any) -> RunConfig:
    """A RunConfig from a YAML file or RunConfig, with keyword options overriding it.

    Keywords that are not RunConfig fields are strategy options (e.g. `freeze=2`, `alpha=0.1`).
    """
    if isinstance(config, RunConfig):
        base = config.to_dict()
    elif config is not None:
        base = load_yaml(config)
    else:
        base = {}
    strategy_options = dict(base.pop("strategy_options", None) or {})
    if options.get("strategy") not in (None, base.get("strategy")):
        strategy_options = {}  # options saved for another strategy would be refused by this one
    for key, value in options.items():
        if value is None:
            continue
        if key in _RUN_FIELDS:
            base[key] = value
        else:
            strategy_options[key] = value
    base["strategy_options"] = strategy_options
    return RunConfig.from_dict(base)
