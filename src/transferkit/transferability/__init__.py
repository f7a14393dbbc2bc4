"""Transferability scores: how well a frozen backbone suits labeled data, before training (LogME, H-score,
LEEP, NCE). Ranking backbones with them is a workflow: `transferkit.workflows.ranking`."""

from transferkit.transferability.scores import SCORES, Score, hscore, leep, list_scores, logme, nce, register_score

__all__ = ["SCORES", "Score", "hscore", "leep", "list_scores", "logme", "nce", "register_score"]
