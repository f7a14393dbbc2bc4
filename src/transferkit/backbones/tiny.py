"""Tiny backbones for fast tests: the real code paths, small random networks with a fixed seed.

Their "pretrained" weights are a deterministic seeded initialisation, so tests can tell
pretrained (seed 0) from scratch (the run's seed) without downloading anything.
"""

from __future__ import annotations

import torch
from torch import nn

from transferkit.backbones.base import Backbone, DataSpec, LayerGroup, group_by_prefix
from transferkit.backbones.hf import HFBackbone, bundled_minilm_path

PRETRAINED_SEED = 1234


class TinyCNN(Backbone):
    """Three conv-BN-ReLU stages and global pooling; 16x16 inputs; BatchNorm on purpose."""

    def __init__(self, pretrained: bool = True):
        super().__init__()
        self.name = "tiny-cnn"
        self.pretrained = pretrained
        with torch.random.fork_rng():
            if pretrained:
                torch.manual_seed(PRETRAINED_SEED)
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
            self.block1 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
            self.block2 = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.num_features = 32
        self.data_spec = DataSpec(modality="image", input_size=(16, 16), mean=(0.5,) * 3, std=(0.5,) * 3)

    def forward_features(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.block2(self.block1(self.stem(inputs))).mean(dim=(2, 3))

    def layer_groups(self) -> list[LayerGroup]:
        order = {"stem": 0, "block1": 1, "block2": 2}
        return group_by_prefix(self, lambda n: (order[n.split(".")[0]], n.split(".")[0]))

    def lora_target_modules(self) -> str:
        return r"^block\d\.0$"


def tiny_text(pretrained: bool = True) -> HFBackbone:
    """A 2-layer, 32-wide BERT with MiniLM's real tokenizer (bundled), seeded init.

    Its pooler is drawn from a second seed after the encoder (leaving the encoder's weights as they
    were): features never use it, but a saved BERT needs it to load in transformers without missing keys.
    """
    from transformers import AutoTokenizer, BertConfig, BertModel
    from transformers.models.bert.modeling_bert import BertPooler

    tokenizer = AutoTokenizer.from_pretrained(bundled_minilm_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    with torch.random.fork_rng():
        if pretrained:
            torch.manual_seed(PRETRAINED_SEED)
        encoder = BertModel(config, add_pooling_layer=False)
    with torch.random.fork_rng():
        if pretrained:
            torch.manual_seed(PRETRAINED_SEED + 1)
        encoder.pooler = BertPooler(config)
        nn.init.normal_(encoder.pooler.dense.weight, std=config.initializer_range)
        nn.init.zeros_(encoder.pooler.dense.bias)
    return HFBackbone("tiny-text", encoder, tokenizer, pretrained, max_length=32)
