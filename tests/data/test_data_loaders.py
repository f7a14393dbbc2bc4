import numpy as np
import pytest
import torch
from PIL import Image

from transferkit.backbones.base import DataSpec
from transferkit.data import LabeledData, build_image_transform, load_data, make_loader
from transferkit.errors import ConfigError

HALF = DataSpec("image", input_size=(16, 16), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=1.0)
TEXT = DataSpec("text", max_length=7)


def _image_data(n=10, size=(28, 28)):
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, 256, size=size, dtype=np.uint8) for _ in range(n)]
    return LabeledData(inputs, np.arange(n) % 2, "image", "classification", ["a", "b"], "imgs")


def fake_tokenize(texts, max_length=None):
    ids = torch.tensor([[len(t), max_length or -1] for t in texts], dtype=torch.long)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@pytest.mark.parametrize("value, expected", [(255, 1.0), (0, -1.0)])
def test_transform_normalises(value, expected):
    out = build_image_transform(HALF)(Image.new("RGB", (9, 9), (value,) * 3))
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    assert torch.allclose(out, torch.full_like(out, expected))


def test_transform_image_size_overrides_spec():
    out = build_image_transform(HALF, image_size=24)(Image.new("RGB", (28, 28)))
    assert out.shape == (3, 24, 24)


def test_transform_uses_spec_mean_and_std():
    spec = DataSpec("image", input_size=(8, 8), mean=(0.0, 0.5, 1.0), std=(1.0, 0.5, 0.25))
    out = build_image_transform(spec)(Image.new("RGB", (8, 8), (255, 255, 255)))
    assert out[:, 0, 0].tolist() == pytest.approx([1.0, 1.0, 0.0])


def test_crop_pct_crops_the_centre():
    image = np.zeros((20, 20), np.uint8)
    image[:, :2] = 255  # a white border column is cropped away at crop_pct 0.8
    spec = DataSpec("image", input_size=(16, 16), mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=0.8)
    full = DataSpec("image", input_size=(16, 16), mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=1.0)
    pil = Image.fromarray(image).convert("RGB")
    assert build_image_transform(spec)(pil).max() == pytest.approx(-1.0)
    assert build_image_transform(full)(pil).max() > 0.5


@pytest.mark.parametrize("augment", ["none", "light", "standard"])
def test_train_transforms_keep_shape(augment):
    out = build_image_transform(HALF, train=True, augment=augment)(Image.new("RGB", (28, 28), (255, 0, 0)))
    assert out.shape == (3, 16, 16)


def test_light_augment_has_no_flip_or_jitter():
    names = [type(t).__name__ for t in build_image_transform(HALF, train=True, augment="light").transforms]
    assert "RandomHorizontalFlip" not in names and "ColorJitter" not in names
    standard = [type(t).__name__ for t in build_image_transform(HALF, train=True, augment="standard").transforms]
    assert "RandomHorizontalFlip" in standard


def test_unknown_augment_suggests():
    with pytest.raises(ConfigError, match="Unknown augment 'standrd'. Did you mean 'standard'"):
        build_image_transform(HALF, augment="standrd")


def test_missing_size_is_refused():
    with pytest.raises(ConfigError, match="no input size; pass image_size"):
        build_image_transform(DataSpec("image"))


def test_image_loader_batches():
    loader = make_loader(_image_data(10), spec=HALF, batch_size=4)
    batches = list(loader)
    assert [len(b[2]) for b in batches] == [4, 4, 2]
    inputs, targets, index = batches[0]
    assert inputs.shape == (4, 3, 16, 16) and inputs.dtype == torch.float32
    assert targets.dtype == torch.long and targets.tolist() == [0, 1, 0, 1]
    assert index.tolist() == [0, 1, 2, 3]


def test_image_loader_from_files(image_folder):
    data = load_data(str(image_folder))["all"]
    inputs, targets, index = next(iter(make_loader(data, spec=HALF, image_size=12, batch_size=8)))
    assert inputs.shape == (7, 3, 12, 12)
    assert targets.tolist() == [0, 0, 0, 1, 1, 1, 1]


def test_train_loader_shuffles_reproducibly_and_drops_nothing():
    data = _image_data(10)

    def order(seed):
        loader = make_loader(data, spec=HALF, batch_size=3, train=True, augment="light", seed=seed)
        return torch.cat([b[2] for b in loader]).tolist()

    assert order(5) == order(5)
    assert order(5) != order(6)
    assert sorted(order(5)) == list(range(10))


def test_text_loader_uses_tokenize_and_max_length():
    data = LabeledData(["a", "bbb", "cc"], [1, 0, 1], "text", "classification", ["n", "p"], "t")
    inputs, targets, index = next(iter(make_loader(data, spec=TEXT, tokenize=fake_tokenize, batch_size=8)))
    assert inputs["input_ids"].tolist() == [[1, 7], [3, 7], [2, 7]]
    assert targets.tolist() == [1, 0, 1] and index.tolist() == [0, 1, 2]
    inputs, _, _ = next(iter(make_loader(data, spec=TEXT, tokenize=fake_tokenize, max_length=3)))
    assert inputs["input_ids"][:, 1].tolist() == [3, 3, 3]


def test_regression_and_unlabeled_targets():
    reg = LabeledData(["a", "b"], [0.5, 2.0], "text", "regression", None, "r")
    _, targets, _ = next(iter(make_loader(reg, spec=TEXT, tokenize=fake_tokenize)))
    assert targets.dtype == torch.float32 and targets.tolist() == [0.5, 2.0]
    unlabeled = LabeledData(["a", "b"], None, "text", "classification", None, "u")
    _, targets, _ = next(iter(make_loader(unlabeled, spec=TEXT, tokenize=fake_tokenize)))
    assert targets.dtype == torch.long and targets.tolist() == [-1, -1]


def test_text_without_tokenize_is_refused():
    data = LabeledData(["a"], None, "text", "classification", None, "t")
    with pytest.raises(ConfigError, match="needs a tokenize callable"):
        make_loader(data, spec=TEXT)


def test_modality_mismatch_is_refused():
    with pytest.raises(ConfigError, match="imgs is image data but the backbone takes text inputs"):
        make_loader(_image_data(2), spec=TEXT, tokenize=fake_tokenize)


def test_bad_batch_size():
    with pytest.raises(ConfigError, match="batch_size must be a positive integer, got 0"):
        make_loader(_image_data(2), spec=HALF, batch_size=0)


def test_worker_processes_load_batches():
    loader = make_loader(_image_data(6), spec=HALF, batch_size=3, num_workers=1)
    assert sum(len(b[2]) for b in loader) == 6
