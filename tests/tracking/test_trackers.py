"""--tracker mlflow|tensorboard: runs read back from a real MLflow SQLite store and with TensorBoard's own reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import transferkit
from transferkit.tracking import list_trackers
from transferkit.training.module import TransferModule

FAST = dict(model="tiny-cnn", image_size=16, progress=False)


def mlflow_client(db: Path):
    from mlflow.tracking import MlflowClient

    assert db.is_file(), f"no MLflow store at {db}"
    return MlflowClient(f"sqlite:///{db}")


def read_metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} of every event file under `folder`, read by TensorBoard's EventAccumulator."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result: dict[str, list[tuple[int, float]]] = {}
    for events in sorted({p.parent for p in folder.rglob("events.out.tfevents.*")}):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            result.setdefault(tag, []).extend((e.step, e.value) for e in accumulator.Scalars(tag))
    return result


def test_trackers_are_listed():
    assert [t["name"] for t in list_trackers()] == ["csv", "tensorboard", "mlflow"]


def test_fit_logs_params_epochs_final_metrics_and_artifacts_to_mlflow(tmp_path, monkeypatch, color_images):
    monkeypatch.chdir(tmp_path)  # nothing may land in ./mlruns
    run = transferkit.fit(data=str(color_images), strategy="full", epochs=2, tracker="mlflow",
                          out=str(tmp_path / "runs" / "full"), **FAST)
    assert run.config.tracking_uri == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"  # saved resolved
    client = mlflow_client(tmp_path / "runs" / "mlflow.db")
    experiment = client.get_experiment_by_name("transferkit")
    [logged] = client.search_runs([experiment.experiment_id])
    assert logged.info.status == "FINISHED" and logged.info.run_name == "full"
    assert logged.data.params["strategy"] == "full" and logged.data.params["epochs"] == "2"
    assert logged.data.params["strategy_options/backbone_lr_scale"] == "0.1"
    assert len(client.get_metric_history(logged.info.run_id, "val/accuracy")) == read_metrics(run.folder)["epochs_run"]
    for split in ("val", "test"):
        for name, value in read_metrics(run.folder)[split].items():
            assert logged.data.metrics[f"final/{split}/{name}"] == pytest.approx(value)
    assert logged.data.metrics["final/trainable_params"] == read_metrics(run.folder)["trainable_params"]
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"config.yaml", "metrics.json", "history.csv", "predictions_test.csv", "model"} <= artifacts
    assert "model/MLmodel" in {a.path for a in client.list_artifacts(logged.info.run_id, "model")}
    weights = {a.path for a in client.list_artifacts(logged.info.run_id, "model/artifacts/run/model")}
    assert "model/artifacts/run/model/model.safetensors" in weights
    assert (tmp_path / "runs" / "mlartifacts").is_dir() and not (tmp_path / "mlruns").exists()


def test_the_mlflow_model_of_a_run_predicts_raw_inputs_like_the_run(tmp_path, monkeypatch, color_images):
    import mlflow.pyfunc

    monkeypatch.chdir(tmp_path)
    run = transferkit.fit(data=str(color_images), strategy="full", epochs=1, tracker="mlflow",
                          out=str(tmp_path / "runs" / "full"), **FAST)
    client = mlflow_client(tmp_path / "runs" / "mlflow.db")
    [logged] = client.search_runs([client.get_experiment_by_name("transferkit").experiment_id])
    images = sorted(str(p) for p in color_images.rglob("*.png"))[::4]
    expected = pd.DataFrame(run.predict(images))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", run.config.tracking_uri)  # where `runs:/` URIs are looked up
    model = mlflow.pyfunc.load_model(f"runs:/{logged.info.run_id}/model")
    from_list = model.predict(images)
    pd.testing.assert_frame_equal(from_list, expected)
    from_frame = model.predict(pd.DataFrame({"id": range(len(images)), "image": images}))
    pd.testing.assert_frame_equal(from_frame, expected)
    assert set(expected["prediction"]) <= {"red", "green", "blue"} and len(expected) == len(images)
    with pytest.raises(Exception, match=r"reads column 'image'; the input has \['id', 'path'\]"):
        model.predict(pd.DataFrame({"id": range(len(images)), "path": images}))


def test_a_resumed_fit_keeps_logging_to_the_same_mlflow_run(tmp_path, monkeypatch, color_images):
    real_epoch_start = TransferModule.on_train_epoch_start

    def power_cut(self):
        if self.current_epoch == 1:
            raise RuntimeError("power cut")
        real_epoch_start(self)

    out = tmp_path / "full"
    with monkeypatch.context() as mp:
        mp.setattr(TransferModule, "on_train_epoch_start", power_cut)
        with pytest.raises(RuntimeError, match="power cut"):
            transferkit.fit(data=str(color_images), strategy="full", epochs=2, tracker="mlflow", out=str(out), **FAST)
    client = mlflow_client(tmp_path / "mlflow.db")
    [failed] = client.search_runs([client.get_experiment_by_name("transferkit").experiment_id])
    assert failed.info.status == "FAILED"
    transferkit.resume(out, progress=False)
    [logged] = client.search_runs([client.get_experiment_by_name("transferkit").experiment_id])
    assert logged.info.run_id == failed.info.run_id and logged.info.status == "FINISHED"
    epochs = [m.value for m in client.get_metric_history(logged.info.run_id, "epoch")]
    assert sorted(set(epochs)) == [0.0, 1.0]  # epoch 0 before the cut, epoch 1 after the resume


def test_compare_groups_its_cells_under_one_mlflow_experiment(tmp_path):
    out = tmp_path / "cmp-digits"
    result = transferkit.compare(data="demo:digits", strategies="feature-extraction,scratch", train_per_class=5,
                                 seeds=1, epochs=1, tracker="mlflow", out=str(out), **FAST)
    client = mlflow_client(out / "mlflow.db")
    experiment = client.get_experiment_by_name("cmp-digits")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == sorted(result.table["cell"])
    for logged in runs:
        row = result.table.set_index("cell").loc[logged.info.run_name]
        assert logged.data.tags["strategy"] == row["strategy"]
        assert logged.data.metrics["final/test/accuracy"] == pytest.approx(row["test/accuracy"])
        assert len(client.get_metric_history(logged.info.run_id, "val/accuracy")) == row["epochs_run"]
    assert [e.name for e in client.search_experiments()] in (["cmp-digits", "Default"], ["cmp-digits"])


@pytest.mark.parametrize("strategy", ["feature-extraction", "full"])
def test_tensorboard_event_files_hold_epochs_and_final_metrics(tmp_path, color_images, strategy):
    run = transferkit.fit(data=str(color_images), strategy=strategy, epochs=2, tracker="tensorboard",
                          out=str(tmp_path / strategy), **FAST)
    logged = scalars(run.folder / "logs" / "tensorboard")
    metrics = read_metrics(run.folder)
    assert len(logged["val/accuracy"]) == metrics["epochs_run"]  # one point per epoch (one for a scikit-learn head)
    assert logged["final/test/accuracy"][-1][1] == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)
    assert logged["final/trainable_params"][-1][1] == metrics["trainable_params"]
    assert (run.folder / "history.csv").is_file()  # the CSV log is still written alongside


def hparams_sessions(folder: Path) -> dict[str, dict]:
    """{run dir: {"hparams": {...}, "metrics": [tags]}} from the hparams plugin data TensorBoard's HParams tab reads."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    sessions = {}
    for events in sorted({p.parent for p in folder.rglob("events.out.tfevents.*")}):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        try:
            content = accumulator.PluginTagToContent("hparams")
        except KeyError:  # an event file without hparams (e.g. of an interrupted attempt)
            continue
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
        hparams = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
                   for k, v in start.session_start_info.hparams.items()}
        sessions[events.name] = {"hparams": hparams,
                                 "metrics": [m.name.tag for m in experiment.experiment.metric_infos]}
    return sessions


def test_tensorboard_hparams_tab_holds_the_options_and_final_metrics(tmp_path, color_images):
    run = transferkit.fit(data=str(color_images), strategy="full", epochs=1, tracker="tensorboard", lr="3e-3",
                          out=str(tmp_path / "full"), **FAST)
    folder = run.folder / "logs" / "tensorboard"
    [session] = hparams_sessions(folder).values()  # one session: the finished run
    hparams = session["hparams"]
    assert hparams["strategy"] == "full" and hparams["lr"] == pytest.approx(3e-3) and hparams["epochs"] == 1
    assert hparams["strategy_options/backbone_lr_scale"] == pytest.approx(0.1)
    assert hparams["weights"] == "none" and hparams["model"] == "tiny-cnn"
    assert {"final/test/accuracy", "final/val/accuracy", "final/trainable_params"} <= set(session["metrics"])
    logged = scalars(folder)
    for tag in session["metrics"]:  # every metric column of the tab has its value in the same run
        assert tag in logged, tag
    assert logged["final/test/accuracy"][-1][1] == pytest.approx(read_metrics(run.folder)["test"]["accuracy"],
                                                                 abs=1e-6)


def test_unknown_tracker_is_refused_before_anything_is_written(cli_error, tmp_path, color_images):
    message = cli_error("fit", "--data", color_images, "--model", "tiny-cnn", "--tracker", "mlfow",
                        "--out", tmp_path / "r")
    assert "Unknown tracker 'mlfow'" in message and "Did you mean 'mlflow'" in message
    assert not (tmp_path / "r").exists()


TEXTS = ["a b", "c"]


@pytest.mark.parametrize("make", [
    lambda: TEXTS, lambda: tuple(TEXTS), lambda: np.array(TEXTS), lambda: pd.Series(TEXTS),
    lambda: pd.DataFrame({"id": [1, 2], "text": TEXTS}), lambda: pd.DataFrame({"review": TEXTS}),
], ids=["list", "tuple", "array", "series", "frame-with-column", "frame-of-one-column"])
def test_mlflow_model_reads_lists_arrays_series_and_frames(make):
    from transferkit.tracking.mlflow_model import raw_inputs

    assert raw_inputs(make(), "text") == TEXTS
    assert raw_inputs("one text", "text") == ["one text"]


@pytest.mark.parametrize(("given", "message"), [
    ("two-columns", r"reads column 'text'; the input has \['id', 'review'\]\. Pass a DataFrame with a 'text' column"),
    ("numbers", r"takes image paths or texts as strings; got float 0\.5"),
])
def test_mlflow_model_refuses_what_it_cannot_read(given, message):
    from transferkit.errors import DataError
    from transferkit.tracking.mlflow_model import raw_inputs

    value = pd.DataFrame({"id": [1], "review": ["x"]}) if given == "two-columns" else [0.5]
    with pytest.raises(DataError, match=message):
        raw_inputs(value, "text")
