"""export/predict_onnx.py: ONNX Runtime, numpy and Pillow alone reproduce `transferkit predict`.

The script runs in a subprocess where torch, transferkit, torchvision, timm and transformers cannot
be imported, on real digits (bundled MNIST written out as PNG files, some padded to other shapes so
resizing and cropping matter) and on texts longer than the token budget.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

import transferkit
from transferkit.backbones import DataSpec
from transferkit.data.transforms import build_image_transform
from transferkit.deploy import predict_onnx
from transferkit.deploy.preprocessing import image_preprocessing
from transferkit.workflows.export import export

BLOCKED = ("torch", "torchvision", "timm", "transformers", "transferkit", "lightning")
#: Runs a script with the heavy libraries made unimportable: `import torch` raises ImportError.
BLOCKING_RUNNER = (
    "import runpy, sys\n"
    f"for name in {BLOCKED!r}:\n"
    "    sys.modules[name] = None\n"
    "script, sys.argv = sys.argv[1], sys.argv[1:]\n"
    "runpy.run_path(script, run_name='__main__')\n"
)


def run_standalone(export_folder: Path, *args, cwd: Path) -> subprocess.CompletedProcess:
    """Run EXPORT/predict_onnx.py as a deployer would, without torch or transferkit."""
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(cwd)}
    return subprocess.run([sys.executable, "-c", BLOCKING_RUNNER, str(export_folder / "predict_onnx.py"),
                           *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def agreement(folder: Path, rows: list[dict], inputs: list[str]) -> tuple[float, float]:
    """Share of inputs where the script and transferkit predict agree, and the largest probability gap."""
    expected = transferkit.load_run(folder).predict(inputs)
    assert [r["input"] for r in rows] == [str(e["input"]) for e in expected]
    same = np.mean([r["prediction"] == e["prediction"] for r, e in zip(rows, expected)])
    gap = max(abs(float(r["probability"]) - e["probability"]) for r, e in zip(rows, expected))
    return float(same), gap


def write_digit_pngs(root: Path, count: int) -> list[str]:
    """`count` bundled MNIST digits as PNG files; every third padded to a non-square shape."""
    from transferkit.data.demos import load_demo

    digits = load_demo("demo:mnist")
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        pixels = digits.inputs[i * 7 % len(digits)]
        if i % 3 == 1:
            pixels = np.pad(pixels, ((0, 0), (3, 6 + i % 5)))  # wider than tall
        elif i % 3 == 2:
            pixels = np.pad(pixels, ((5 + i % 4, 2), (0, 0)))  # taller than wide
        path = root / f"digit{i:04d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def digit_pngs(tmp_path_factory) -> list[str]:
    return write_digit_pngs(tmp_path_factory.mktemp("digits"), 90)


@pytest.mark.parametrize("spec, image_size", [
    (DataSpec("image", (224, 224), (0.5,) * 3, (0.5,) * 3, "bicubic", 0.875), 64),
    (DataSpec("image", (16, 16), interpolation="bilinear"), None),
    (DataSpec("image", (20, 30), interpolation="bicubic", crop_pct=0.9), None),
    (DataSpec("image", (40, 40), interpolation="nearest", crop_pct=0.95), 48),
])
@pytest.mark.parametrize("shape", [(28, 28), (28, 37), (45, 31), (9, 13)])
def test_script_preprocessing_equals_the_transform_predict_uses(tmp_path, spec, image_size, shape):
    transform = build_image_transform(spec, image_size=image_size)
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    recorded = json.loads(json.dumps(image_preprocessing(transform, input_dtype="float32")))
    recorded["steps"][-1]["in_model"] = False  # normalise in numpy here, to compare with the full transform
    ours = predict_onnx.preprocess_image(tmp_path / "x.png", recorded)
    theirs = transform(Image.open(tmp_path / "x.png").convert("RGB")).numpy()
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)  # bit for bit: same sizes, offsets and float32 steps


def test_export_folder_describes_its_preprocessing(copy_run, full_image_run):
    folder = copy_run(full_image_run)
    export(folder)
    info = json.loads((folder / "export" / "transferkit_export.json").read_text())
    steps = info["preprocessing"]["steps"]
    assert [s["op"] for s in steps] == ["resize", "center_crop", "to_array", "normalize"]
    assert steps[0] == {"op": "resize", "interpolation": "bilinear", "library": "Pillow Image.resize (antialiased)",
                        "edge": "shorter", "size": 16, "max_size": None, "longer_edge": "int(size * longer / shorter)"}
    assert steps[2]["dtype"] == "float32" and steps[2]["divide_by"] == 255.0 and steps[2]["layout"] == "NCHW"
    assert steps[3]["mean"] == [0.5] * 3 and steps[3]["in_model"] is True
    meta = ort.InferenceSession(str(folder / "export" / "model.onnx")).get_modelmeta().custom_metadata_map
    assert json.loads(meta["transferkit.classes"]) == ["blue", "green", "red"]
    assert meta["transferkit.task"] == "classification"
    assert json.loads(meta["transferkit.preprocessing"]) == info["preprocessing"]


@pytest.mark.parametrize("input_dtype", ["float32", "uint8"])
def test_standalone_script_agrees_with_predict_on_real_digits(copy_run, full_image_run, digit_pngs, tmp_path,
                                                              input_dtype):
    folder = copy_run(full_image_run)
    export(folder, input_dtype=input_dtype)
    result = run_standalone(folder / "export", *digit_pngs, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = read_csv(result.stdout)
    assert list(rows[0]) == ["input", "prediction", "probability"] and len(rows) == len(digit_pngs)
    same, gap = agreement(folder, rows, digit_pngs)
    assert same >= 0.99 and gap < 1e-4


def test_standalone_script_takes_a_folder(copy_run, fe_image_run, color_images, tmp_path):
    folder = copy_run(fe_image_run)
    export(folder)
    result = run_standalone(folder / "export", color_images / "red", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = read_csv(result.stdout)
    assert len(rows) == 20 and {r["prediction"] for r in rows} == {"red"}


def test_standalone_text_script_truncates_and_pads_like_predict(copy_run, text_run, tmp_path):
    folder = copy_run(text_run)
    export(folder)
    texts = ["great fun movie 3", "dreadful waste of time, hated it 7", "ok",
             " ".join(["loved it, wonderful"] * 30), "poor and dull acting, " * 40 + "but a joy to watch"]
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    info = json.loads((folder / "export" / "transferkit_export.json").read_text())
    assert info["preprocessing"]["truncation"]["max_length"] == 32 < len(texts[3].split())
    result = run_standalone(folder / "export", tmp_path / "texts.txt", "--batch-size", 2, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = read_csv(result.stdout)
    assert [r["input"] for r in rows] == texts
    expected = transferkit.load_run(folder).predict(texts)
    assert [r["prediction"] for r in rows] == [e["prediction"] for e in expected]
    np.testing.assert_allclose([float(r["probability"]) for r in rows], [e["probability"] for e in expected],
                               atol=1e-5)


def test_standalone_regression_prints_values(cli, tmp_path):
    from synthetic_data import write_counts

    out = tmp_path / "counts-run"
    assert cli("fit", "--data", write_counts(tmp_path / "counts.csv"), "--task", "regression",
               "--model", "tiny-text", "--out", out).code == 0
    export(out)
    texts = ["good good", "good good good good good good good"]
    (tmp_path / "texts.txt").write_text("\n".join(texts), encoding="utf-8")
    result = run_standalone(out / "export", tmp_path / "texts.txt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = read_csv(result.stdout)
    assert list(rows[0]) == ["input", "prediction"]
    expected = [e["prediction"] for e in transferkit.load_run(out).predict(texts)]
    np.testing.assert_allclose([float(r["prediction"]) for r in rows], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("make_args, message", [
    (lambda tmp: [tmp / "missing.png"], "Image not found: .*missing.png"),
    (lambda tmp: [tmp], "No image files"),
    (lambda tmp: [(tmp / "broken.png", (tmp / "broken.png").write_bytes(b"not a png"))[0]], "Cannot read image"),
])
def test_standalone_script_errors_are_one_line(copy_run, fe_image_run, tmp_path, make_args, message):
    import re

    folder = copy_run(fe_image_run)
    export(folder)
    empty = tmp_path / "inputs"
    empty.mkdir()
    result = run_standalone(folder / "export", *make_args(empty), cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("predict_onnx: error: ") and re.search(message, lines[0]), lines


@pytest.fixture
def _one_blas_thread():
    """On a busy CPU, OpenBLAS's spinning threads made the logistic head's small dot products ~1000x slower."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.mark.integration
@pytest.mark.usefixtures("_one_blas_thread")
def test_efficientnet_lite0_export_agrees_with_predict_on_mnist_files(tmp_path):
    """ImageNet weights, timm's evaluation transform: bicubic resize to 96 / 0.875 and a centre crop."""
    run = transferkit.fit(data="demo:mnist", model="efficientnet_lite0", strategy="feature-extraction",
                          train_per_class=10, val_fraction=0.01, test_fraction=0.01, image_size=96,
                          out=str(tmp_path / "run"), progress=False)
    export(run.folder)
    info = json.loads((run.folder / "export" / "transferkit_export.json").read_text())
    assert [(s["op"], s.get("size") or s.get("height")) for s in info["preprocessing"]["steps"][:2]] == [
        ("resize", 109), ("center_crop", 96)]
    assert info["preprocessing"]["steps"][0]["interpolation"] == "bicubic"
    digits = write_digit_pngs(tmp_path / "digits", 100)
    result = run_standalone(run.folder / "export", *digits, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    same, gap = agreement(run.folder, read_csv(result.stdout), digits)
    assert same >= 0.99 and gap < 1e-3


@pytest.mark.integration
@pytest.mark.usefixtures("_one_blas_thread")
def test_minilm_export_agrees_with_predict_on_reviews(tmp_path):
    from transferkit.data.demos import load_demo

    run = transferkit.fit(data="demo:rotten-tomatoes", model="minilm-l6", strategy="feature-extraction",
                          train_per_class=10, val_fraction=0.01, test_fraction=0.01, max_length=48,
                          out=str(tmp_path / "run"), progress=False)
    export(run.folder)
    texts = [" ".join(t.split()) for t in load_demo("demo:rotten-tomatoes").inputs[-100:]]
    (tmp_path / "reviews.txt").write_text("\n".join(texts), encoding="utf-8")
    result = run_standalone(run.folder / "export", tmp_path / "reviews.txt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = read_csv(result.stdout)
    expected = transferkit.load_run(run.folder).predict(texts)
    assert [r["input"] for r in rows] == texts
    assert np.mean([r["prediction"] == e["prediction"] for r, e in zip(rows, expected)]) >= 0.99
    assert max(abs(float(r["probability"]) - e["probability"]) for r, e in zip(rows, expected)) < 1e-4
