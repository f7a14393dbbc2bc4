"""Real bundled weights on small real data: the pretrained path works end to end and helps."""

from __future__ import annotations

import numpy as np
import pytest

import transferkit

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "cache"))


MNIST = dict(data="demo:mnist", model="efficientnet_lite0", train_per_class=10, image_size=32,
             val_fraction=0.1, test_fraction=0.1, progress=False)


def test_efficientnet_feature_extraction_beats_scratch_on_mnist(tmp_path):
    fe = transferkit.fit(strategy="feature-extraction", out=str(tmp_path / "fe"), **MNIST)
    scratch = transferkit.fit(strategy="scratch", epochs=3, out=str(tmp_path / "scratch"), **MNIST)
    # 100 labels, 500 test digits: ImageNet features separate digits far above chance (0.1).
    assert fe.metrics["test"]["accuracy"] > 0.6
    assert fe.metrics["test"]["accuracy"] > scratch.metrics["test"]["accuracy"] + 0.2
    assert fe.metrics["trainable_params"] == 1280 * 10 + 10


def test_feature_cache_is_reused_and_gives_identical_results(tmp_path):
    first = transferkit.fit(strategy="feature-extraction", out=str(tmp_path / "a"), **MNIST)
    cached = list((tmp_path / "cache" / "features").glob("*.npy"))
    assert len(cached) == 2  # train and val; the test split is predicted end to end
    second = transferkit.fit(strategy="feature-extraction", out=str(tmp_path / "b"), **MNIST)
    assert sorted((tmp_path / "cache" / "features").glob("*.npy")) == sorted(cached)
    assert second.metrics["test"] == first.metrics["test"]


def test_efficientnet_full_finetune_saves_a_model_that_predicts_alone(tmp_path):
    run = transferkit.fit(strategy="full", epochs=2, out=str(tmp_path / "full"), **MNIST)
    assert run.metrics["test"]["accuracy"] > 0.5
    data = transferkit.load_run(run.folder)
    images = [np.full((28, 28), 0, dtype=np.uint8), np.eye(28, dtype=np.uint8) * 255]
    rows = data.predict(images)
    assert [r["prediction"] in [str(i) for i in range(10)] for r in rows] == [True, True]
    again = transferkit.load_run(run.folder).predict(images)
    assert [r["probability"] for r in rows] == pytest.approx([r["probability"] for r in again])


REVIEWS = dict(data="demo:rotten-tomatoes", model="minilm-l6", train_per_class=50, max_length=48,
               val_fraction=0.03, test_fraction=0.03, progress=False)


def test_minilm_feature_extraction_on_reviews(tmp_path):
    run = transferkit.fit(strategy="feature-extraction", out=str(tmp_path / "fe"), **REVIEWS)
    assert run.metrics["test"]["accuracy"] > 0.62  # 100 labels; majority class is 0.58
    rows = run.predict(["A triumph: moving, funny and beautifully acted.", "Dull, lifeless and far too long."])
    assert [r["prediction"] for r in rows] == ["fresh", "rotten"]


def test_minilm_lora_merges_adapters_into_saved_weights(tmp_path):
    run = transferkit.fit(strategy="lora", epochs=1, out=str(tmp_path / "lora"), **REVIEWS)
    assert run.metrics["trainable_params"] < 0.01 * run.metrics["total_params"]
    reloaded = transferkit.load_run(run.folder)
    assert not any("lora" in name for name, _ in reloaded.model.named_parameters())
    rows = reloaded.predict(["Wonderful.", "Awful."])
    assert {r["prediction"] for r in rows} <= {"fresh", "rotten"}
