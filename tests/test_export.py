"""`transferkit export RUN --format onnx`: a graph that ONNX Runtime runs the way PyTorch runs the run's model."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image
from transformers import AutoTokenizer

import transferkit
from transferkit.data.transforms import build_image_transform
from transferkit.deploy import PREDICT_SCRIPT
from transferkit.errors import ConfigError, ExportError
from transferkit.workflows.export import export
from transferkit.training.plan import load_splits


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_image_export_includes_normalisation_and_matches_predict(copy_run, full_image_run):
    folder = copy_run(full_image_run)
    result = transferkit.export(folder)
    assert result.model_path == folder / "export" / "model.onnx" and result.model_path.is_file()
    assert 0 <= result.max_abs_diff <= result.tolerance == 1e-4
    run = transferkit.load_run(folder)
    test = load_splits(run.config)["test"]
    # The run's own evaluation transform up to the tensor, without its normalisation: the graph normalises.
    transform = build_image_transform(run.model.backbone.data_spec, image_size=16)
    pixels = np.stack([transform.transforms[-2](transform.transforms[1](transform.transforms[0](
        Image.open(p).convert("RGB")))).numpy() for p in test.inputs])
    logits = _session(result.model_path).run(None, {"pixels": pixels})[0]
    expected = [row["probability"] for row in run.predict(test.inputs)]
    probs = torch.from_numpy(logits).softmax(-1).numpy()
    np.testing.assert_allclose(probs.max(-1), expected, atol=1e-4)
    info = json.loads((folder / "export" / "transferkit_export.json").read_text())
    assert info["classes"] == ["blue", "green", "red"] and info["normalisation_included"] is True
    assert info["max_abs_diff"] == result.max_abs_diff and info["image_size"] == 16
    assert (folder / "export" / "predict_onnx.py").read_text() == PREDICT_SCRIPT.read_text()


def test_uint8_export_takes_raw_pixels(copy_run, fe_image_run):
    folder = copy_run(fe_image_run)
    float_export = _session(transferkit.export(folder).model_path)
    pixels = np.random.default_rng(0).integers(0, 256, (3, 3, 16, 16), dtype=np.uint8)
    as_float = float_export.run(None, {"pixels": pixels.astype(np.float32) / 255.0})[0]
    result = export(folder, input_dtype="uint8")
    as_uint8 = _session(result.model_path).run(None, {"pixels": pixels})[0]
    np.testing.assert_allclose(as_uint8, as_float, atol=1e-5)
    assert json.loads((folder / "export" / "transferkit_export.json").read_text())["pixel_range"] == "0..255"


def test_text_export_ships_its_tokenizer(copy_run, text_run):
    folder = copy_run(text_run)
    result = export(folder)
    assert result.inputs == ("input_ids", "attention_mask")
    tokenizer = AutoTokenizer.from_pretrained(str(folder / "export" / "tokenizer"))
    texts = ["great fun movie 3", "dreadful waste of time, hated it 7", "ok"]
    encoded = tokenizer(texts, padding=True, return_tensors="np")
    logits = _session(result.model_path).run(None, {"input_ids": encoded["input_ids"],
                                                    "attention_mask": encoded["attention_mask"]})[0]
    expected = [row["probability"] for row in transferkit.load_run(folder).predict(texts)]
    probs = torch.from_numpy(logits).softmax(-1).numpy()
    np.testing.assert_allclose(probs.max(-1), expected, atol=1e-4)


def test_export_refuses_a_graph_outside_the_tolerance(copy_run, fe_image_run, monkeypatch):
    import transferkit.workflows.export as export_module

    folder = copy_run(fe_image_run)
    real = export_module.onnx_outputs
    monkeypatch.setattr(export_module, "onnx_outputs", lambda *a: real(*a) + 0.01)
    with pytest.raises(ExportError, match=r"differ from PyTorch's by up to 0\.01.*tolerance 0\.0001"):
        export(folder)
    assert not (folder / "export").exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(".export")]
    assert export(folder, tolerance=0.02).max_abs_diff == pytest.approx(0.01, abs=1e-4)


def test_export_replaces_a_previous_export(copy_run, fe_image_run):
    folder = copy_run(fe_image_run)
    export(folder)
    (folder / "export" / "stale.txt").write_text("old")
    export(folder, input_dtype="uint8")
    assert not (folder / "export" / "stale.txt").exists()
    assert sorted(p.name for p in folder.iterdir() if "export" in p.name) == ["export"]


def test_cli_export_reports_the_difference(cli, copy_run, fe_image_run):
    folder = copy_run(fe_image_run)
    result = cli("export", folder, "--format", "onnx")
    assert result.code == 0, result
    assert "model.onnx" in result.out and "tolerance 0.0001" in result.out


@pytest.mark.parametrize("options, message", [
    (dict(format="tflite"), "Unknown export format 'tflite'. Choose one of: onnx"),
    (dict(input_dtype="int16"), "Unknown input dtype 'int16'. Choose one of: float32, uint8"),
    (dict(tolerance=-1.0), "--tolerance must be zero or positive"),
])
def test_export_option_errors(fe_image_run, options, message):
    with pytest.raises(ConfigError, match=message):
        export(fe_image_run, **options)


def test_cli_export_error_is_one_line(cli_error, tmp_path):
    assert "not a transferkit run" in cli_error("export", tmp_path)
