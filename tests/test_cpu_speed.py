"""CPU speed settings: convnets run channels-last inside extraction and prediction, and are put back after."""

from __future__ import annotations

import numpy as np
import torch

from transferkit.backbones import create_backbone
from transferkit.inference import channels_last, channels_last_inputs
from transferkit.training.features import extract_features


def _is_nhwc(module) -> bool:
    conv = next(p for p in module.parameters() if p.dim() == 4)
    return conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()


def test_channels_last_converts_a_convnet_and_puts_it_back():
    backbone = create_backbone("tiny-cnn")
    x = torch.rand(4, 3, 16, 16)
    expected = backbone.eval()(x)
    with channels_last(backbone) as nhwc:
        assert nhwc and _is_nhwc(backbone)
        got = backbone(channels_last_inputs(x))
    assert not _is_nhwc(backbone)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert next(backbone.parameters()).requires_grad  # still trainable: not an inference tensor


def test_channels_last_leaves_other_models_and_inputs_alone():
    text = create_backbone("tiny-text")
    before = {n: p.stride() for n, p in text.named_parameters()}
    with channels_last(text) as nhwc:
        assert not nhwc
    assert before == {n: p.stride() for n, p in text.named_parameters()}
    tokens = {"input_ids": torch.ones(2, 3, dtype=torch.long)}
    assert channels_last_inputs(tokens) is tokens


def test_extraction_matches_a_plain_forward_and_restores_the_layout(tmp_path):
    backbone = create_backbone("tiny-cnn").eval()
    images = torch.rand(10, 3, 16, 16)
    loader = [(images[i:i + 4], None, torch.arange(i, min(i + 4, 10))) for i in range(0, 10, 4)]
    feats = extract_features(backbone, loader, tmp_path / "f.npy", 10)
    assert not _is_nhwc(backbone)
    with torch.no_grad():
        np.testing.assert_allclose(feats, backbone(images).numpy(), atol=1e-5)
