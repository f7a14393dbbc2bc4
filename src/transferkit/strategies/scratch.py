"""Training from scratch: the same architecture from random initialisation, the baseline."""

from __future__ import annotations

from transferkit.strategies.base import Strategy


class Scratch(Strategy):
    """The same network trained from a random initialisation, every layer at one learning rate.

    When to use: as the baseline that tells whether pretraining helped at all.
    """

    name = "scratch"
    when_to_use = "Baseline: same architecture, random init, every layer trained; does transfer help?"
    defaults = {"epochs": 15, "lr": 1e-3, "head": "linear"}
    uses_pretrained = False
