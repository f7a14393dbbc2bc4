"""transferkit: adapt a pretrained network to a new task; every transfer strategy one command away."""

from transferkit.api import (build_config, compare, evaluate, export, fit, load_run, predict, rank, report, resume,
                             tune)
from transferkit.backbones import create_backbone, list_backbones, register_backbone
from transferkit.config import RunConfig
from transferkit.errors import TransferkitError
from transferkit.runs import Run
from transferkit.strategies import create_strategy, list_strategies, register_strategy

__version__ = "0.1.0"

__all__ = ["Run", "RunConfig", "TransferkitError", "build_config", "compare", "create_backbone", "create_strategy",
           "evaluate", "export", "fit", "list_backbones", "list_strategies", "load_run", "predict", "rank",
           "register_backbone", "register_strategy", "report", "resume", "tune"]
