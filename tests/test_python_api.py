"""The Python API takes what Python users hold: DataFrames, lists of paths, images, arrays or texts, model objects.

Every test fits or predicts for real (tiny backbones, small synthetic data) and compares with the
path-based route that the rest of the suite already checks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

import transferkit
from transferkit.backbones import create_backbone
from transferkit.config import load_yaml
from transferkit.data import load_data
from transferkit.errors import ConfigError, DataError


def _image_frame(color_images: Path) -> pd.DataFrame:
    paths = sorted(str(p) for p in color_images.glob("*/*.png"))
    return pd.DataFrame({"image": paths, "label": [Path(p).parent.name for p in paths]})


@pytest.fixture(scope="module")
def frame_run(tmp_path_factory, color_images):
    frame = _image_frame(color_images)
    out = tmp_path_factory.mktemp("py") / "frame-run"
    return transferkit.fit(data=frame, model="tiny-cnn", strategy="feature-extraction", image_size=16,
                           out=str(out), progress=False), frame


def test_dataframe_round_trip_predicts_every_row(frame_run):
    """fit on a DataFrame, predict a DataFrame of 60 rows: 60 predictions, the same as predicting the paths."""
    run, frame = frame_run
    assert len(frame) == 60
    from_frame = run.predict(frame)
    from_paths = run.predict(list(frame["image"]))
    assert len(from_frame) == 60
    assert [r["input"] for r in from_frame] == list(frame["image"])
    assert [r["prediction"] for r in from_frame] == [r["prediction"] for r in from_paths]
    np.testing.assert_allclose([r["probability"] for r in from_frame], [r["probability"] for r in from_paths])


def test_in_memory_data_is_recorded_by_fingerprint_and_not_reloadable_elsewhere(frame_run):
    run, frame = frame_run
    recorded = load_yaml(run.folder / "config.yaml")["data"]
    assert recorded.startswith("<DataFrame: 60 rows, fingerprint ") and recorded.endswith(">")
    assert len(load_data(recorded)["all"]) == 60  # this process still holds the object
    other = recorded[:-13] + "000000000000>"  # what another process (a resume) sees: a name it never held
    with pytest.raises(DataError, match="not saved with the run, so it cannot be reloaded"):
        load_data(other)


def test_images_and_arrays_predict_like_their_files(frame_run):
    run, frame = frame_run
    paths = list(frame["image"])[::7]
    images = [Image.open(p).convert("RGB") for p in paths]
    arrays = [np.asarray(img) for img in images]
    expected = [r["prediction"] for r in run.predict(paths)]
    assert [r["prediction"] for r in run.predict(images)] == expected
    assert [r["prediction"] for r in run.predict(arrays)] == expected
    assert [r["input"] for r in run.predict(arrays)] == [f"item{i}" for i in range(len(paths))]


def test_predict_proba_and_classes_follow_scikit_learn(frame_run):
    run, frame = frame_run
    proba = run.predict_proba(frame)
    assert proba.shape == (60, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert list(run.classes_) == ["blue", "green", "red"]
    predicted = [r["prediction"] for r in run.predict(frame)]
    assert list(run.classes_[proba.argmax(axis=1)]) == predicted


def test_evaluate_takes_a_dataframe_and_reports_each_class(frame_run):
    run, frame = frame_run
    evaluation = run.evaluation(frame)
    assert evaluation.n == 60 and set(evaluation.per_class) == {"blue", "green", "red"}
    assert sum(c["support"] for c in evaluation.per_class.values()) == 60
    preds = [r["prediction"] for r in run.predict(frame)]
    accuracy = np.mean([p == t for p, t in zip(preds, frame["label"])])
    assert evaluation.metrics["accuracy"] == pytest.approx(accuracy)
    assert run.evaluate(frame) == evaluation.metrics


def test_fit_takes_a_list_with_labels(tmp_path, color_images):
    frame = _image_frame(color_images)
    images = [Image.open(p).convert("RGB") for p in frame["image"]]
    run = transferkit.fit(data=images, labels=list(frame["label"]), model="tiny-cnn",
                          strategy="feature-extraction", image_size=16, out=str(tmp_path / "list"), progress=False)
    assert run.metrics["n_train"] + run.metrics["n_val"] + run.metrics["n_test"] == 60
    saved = pd.read_csv(run.folder / "predictions_test.csv")
    assert saved["input"].str.match(r"item\d+$").all()


def test_text_lists_and_frames_predict_alike(text_run, reviews_csv):
    run = transferkit.load_run(text_run)
    frame = pd.read_csv(reviews_csv)
    texts = list(frame["text"])
    from_list = run.predict(texts)
    assert [r["input"] for r in from_list] == texts
    assert [r["prediction"] for r in run.predict(frame)] == [r["prediction"] for r in from_list]


def test_predictions_csv_carries_input_label_prediction_and_probabilities(fe_image_run):
    saved = pd.read_csv(fe_image_run / "predictions_test.csv")
    assert list(saved.columns) == ["index", "input", "target", "prediction", "p_blue", "p_green", "p_red"]
    assert all(Path(p).parent.name == t for p, t in zip(saved["input"], saved["target"]))  # folder = label
    proba = saved[["p_blue", "p_green", "p_red"]].to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert list(np.array(["blue", "green", "red"])[proba.argmax(axis=1)]) == list(saved["prediction"])


def test_metrics_record_leakage_and_split_warnings(tmp_path, color_images):
    frame = _image_frame(color_images)
    leaky = pd.concat([frame, frame.iloc[:12]], ignore_index=True)  # 12 files twice: some land in val/test
    run = transferkit.fit(data=leaky, model="tiny-cnn", strategy="feature-extraction", image_size=16,
                          out=str(tmp_path / "leaky"), progress=False)
    metrics = json.loads((run.folder / "metrics.json").read_text())
    leaked = metrics["leakage"]["val"]["count"] + metrics["leakage"]["test"]["count"]
    assert leaked > 0 and metrics["leakage"]["test"]["total"] == metrics["n_test"]
    assert any("identical to training items" in w for w in metrics["split_warnings"])


class _Pooled(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x):
        return self.body(self.stem(x))


def test_a_plain_module_with_num_features_trains_and_groups_by_children(tmp_path, frame_run):
    _, frame = frame_run
    torch.manual_seed(0)
    module = _Pooled()
    run = transferkit.fit(data=frame, model=module, num_features=6, strategy="full", epochs=1, image_size=16,
                          out=str(tmp_path / "module"), progress=False)
    assert run.config.model.startswith("object:module-_Pooled-")
    assert [g.name for g in create_backbone(run.config.model).layer_groups()] == ["stem", "body"]
    assert len(transferkit.load_run(run.folder, model=_Pooled()).predict(frame)) == 60
    with pytest.raises(ConfigError, match="pass num_features="):
        transferkit.fit(data=frame, model=_Pooled(), out=str(tmp_path / "no-width"))


def test_a_transformers_model_needs_its_tokenizer(tmp_path, reviews_csv):
    backbone = create_backbone("tiny-text")
    with pytest.raises(ConfigError, match="needs its tokenizer"):
        transferkit.fit(data=str(reviews_csv), model=backbone.encoder, out=str(tmp_path / "x"))


def test_a_transformers_object_run_saves_an_encoder_automodel_loads(tmp_path, reviews_csv):
    from transformers import AutoModel

    backbone = create_backbone("tiny-text")
    run = transferkit.fit(data=pd.read_csv(reviews_csv), model=(backbone.encoder, backbone.tokenizer),
                          strategy="feature-extraction", out=str(tmp_path / "hf"), progress=False)
    encoder = AutoModel.from_pretrained(str(run.folder / "model" / "encoder"))
    trained = run.model.backbone.encoder.state_dict()
    for key, value in encoder.state_dict().items():
        if key in trained:
            torch.testing.assert_close(value, trained[key])
    assert run.meta.native["backbone"]["library"] == "transformers"
    assert len(run.predict(list(pd.read_csv(reviews_csv)["text"])[:5])) == 5


def test_a_timm_object_run_loads_natively_and_predicts_in_a_fresh_process(tmp_path, frame_run):
    import timm
    from safetensors.torch import load_file

    _, frame = frame_run
    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=5)
    run = transferkit.fit(data=frame, model=model, strategy="feature-extraction", image_size=32,
                          out=str(tmp_path / "timm"), progress=False)
    assert model.num_classes == 5  # the caller's object is not changed
    native = timm.create_model(run.meta.native["backbone"]["architecture"], num_classes=0)
    native.load_state_dict(load_file(str(run.folder / "model" / "backbone.safetensors")), strict=True)
    expected = [r["prediction"] for r in run.predict(frame)]
    # A fresh process has no registered object: the run rebuilds the backbone from the recorded architecture.
    code = ("import json, sys, pandas as pd, transferkit; run = transferkit.load_run(sys.argv[1]); "
            "print(json.dumps([r['prediction'] for r in run.predict(pd.read_csv(sys.argv[2]))]))")
    frame.to_csv(tmp_path / "frame.csv", index=False)
    done = subprocess.run([sys.executable, "-c", code, str(run.folder), str(tmp_path / "frame.csv")],
                          capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == expected


def test_rank_takes_a_dataframe(frame_run):
    _, frame = frame_run
    ranking = transferkit.rank(frame, "tiny-cnn,tiny-cnn@random", image_size=16, progress=False)
    assert {row["model"] for row in ranking.rows} == {"tiny-cnn", "tiny-cnn@random"}
    assert all(np.isfinite(row["logme"]) for row in ranking.rows)
