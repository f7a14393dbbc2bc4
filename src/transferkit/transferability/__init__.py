"""Transferability: score pretrained backbones on labeled data before training, and rank them."""

from transferkit.transferability.ranking import Ranking, rank
from transferkit.transferability.scores import SCORES, Score, hscore, leep, list_scores, logme, nce, register_score

__all__ = ["SCORES", "Ranking", "Score", "hscore", "leep", "list_scores", "logme", "nce", "rank", "register_score"]
