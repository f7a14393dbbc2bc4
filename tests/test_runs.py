"""Run folders: `load_run`, `Run.predict` and `evaluate` give what the fitted model gave; model/ stands alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from synthetic_data import write_reviews

import transferkit
from transferkit.errors import ConfigError, DataError, RunFolderError
from transferkit.evaluation.metrics import task_metrics
from transferkit.runs import load_model
from transferkit.training.plan import load_splits

RUN_FIXTURES = ["fe_image_run", "full_image_run", "text_run"]


def test_load_run_reads_the_folder(fe_image_run):
    run = transferkit.load_run(fe_image_run)
    assert run.folder == fe_image_run
    assert run.metrics == json.loads((fe_image_run / "metrics.json").read_text())
    assert run.config.model == "tiny-cnn" and run.config.strategy == "feature-extraction"
    assert run.meta.classes == ["blue", "green", "red"] and run.meta.modality == "image"


@pytest.mark.parametrize("run_fixture", RUN_FIXTURES)
def test_saved_test_predictions_give_the_saved_metrics(request, run_fixture):
    folder = request.getfixturevalue(run_fixture)
    saved = pd.read_csv(folder / "predictions_test.csv")
    metrics = json.loads((folder / "metrics.json").read_text())["test"]
    assert metrics["accuracy"] == pytest.approx((saved["target"] == saved["prediction"]).mean())
    assert metrics == pytest.approx(task_metrics("classification", saved["target"].to_numpy(),
                                                 saved["prediction"].to_numpy()))


@pytest.mark.parametrize("run_fixture", RUN_FIXTURES)
def test_run_predict_reproduces_the_evaluated_model(request, run_fixture):
    """The saved model is the one that produced metrics.json (best checkpoint, exported)."""
    run = transferkit.load_run(request.getfixturevalue(run_fixture))
    test = load_splits(run.config)["test"]
    saved = pd.read_csv(run.folder / "predictions_test.csv")
    assert list(saved["target"]) == [test.classes[i] for i in test.targets]  # the same test split
    predicted = [row["prediction"] for row in run.predict(test.inputs)]
    assert predicted == list(saved["prediction"])


def _copy_model_only(run: Path, dest: Path) -> Path:
    shutil.copytree(run / "model", dest / "model")
    return dest


def _example_inputs(run: transferkit.Run):
    if run.meta.modality == "text":
        return run.model.backbone.tokenize(["great fun movie", "dreadful waste of time"])
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("run_fixture", ["full_image_run", "text_run"])
def test_model_reloads_from_model_folder_alone(request, tmp_path, run_fixture):
    run = transferkit.load_run(request.getfixturevalue(run_fixture))
    model, meta = load_model(_copy_model_only(run.folder, tmp_path / "deployed"))
    assert meta == run.meta
    assert not model.training
    original = run.model.state_dict()
    assert all(torch.equal(value, original[key]) for key, value in model.state_dict().items())
    inputs = _example_inputs(run)
    with torch.no_grad():
        assert torch.allclose(model(inputs), run.model(inputs), atol=1e-6)


def test_predict_after_deleting_checkpoints_and_logs(copy_run, full_image_run, color_images):
    folder = copy_run(full_image_run)
    shutil.rmtree(folder / "checkpoints")
    shutil.rmtree(folder / "logs")
    images = [str(p) for p in sorted(color_images.rglob("*.png"))[:6]]
    assert transferkit.load_run(folder).predict(images) == transferkit.load_run(full_image_run).predict(images)


def test_evaluate_needs_config_yaml_but_model_does_not(copy_run, fe_image_run):
    folder = copy_run(fe_image_run)
    (folder / "config.yaml").unlink()
    with pytest.raises(ConfigError, match="config.yaml"):
        transferkit.load_run(folder)
    model, meta = load_model(folder)
    assert meta.classes == ["blue", "green", "red"]


def test_predict_arrays_like_files(fe_image_run, color_images):
    run = transferkit.load_run(fe_image_run)
    path = color_images / "green" / "2.png"
    from_array = run.predict([np.asarray(Image.open(path))])[0]
    from_file = run.predict([str(path)])[0]
    assert from_array["input"] == "item0" and from_file["input"] == str(path)
    assert from_array["prediction"] == from_file["prediction"]
    assert from_array["probability"] == pytest.approx(from_file["probability"], abs=1e-6)


def test_predict_nothing_is_an_error(fe_image_run):
    with pytest.raises(DataError, match="empty list; give at least one input"):
        transferkit.predict(fe_image_run, [])


def test_evaluate_matches_predict(tmp_path, text_run):
    holdout = write_reviews(tmp_path / "holdout.csv", per_class=5, seed=7)
    frame = pd.read_csv(holdout)
    predicted = [row["prediction"] for row in transferkit.predict(text_run, list(frame["text"]))]
    metrics = transferkit.evaluate(text_run, str(holdout))
    assert metrics["accuracy"] == pytest.approx((frame["label"] == predicted).mean())


@pytest.mark.parametrize(("make", "match"), [
    (lambda tmp: tmp / "missing", "Run folder not found"),
    (lambda tmp: tmp, "is not a transferkit run"),
])
def test_load_run_refuses_folders_that_are_not_runs(tmp_path, make, match):
    with pytest.raises(RunFolderError, match=match):
        transferkit.load_run(make(tmp_path))


def test_resume_writes_into_the_folder_given(copy_run, full_image_run):
    """A moved or copied unfinished run resumes in place, not where its config.yaml says it was made."""
    folder = copy_run(full_image_run)
    (folder / "metrics.json").unlink()
    original = (full_image_run / "metrics.json").stat().st_mtime_ns
    run = transferkit.resume(folder, progress=False)
    assert run.folder == folder and (folder / "metrics.json").is_file()
    assert (full_image_run / "metrics.json").stat().st_mtime_ns == original
