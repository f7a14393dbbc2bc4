"""MLflow: params, per-epoch metrics, final metrics, run-folder files and the model in an MLflow store.

The store defaults to a SQLite database next to the run folder (`sqlite:///<root>/mlflow.db`) with
artifacts in `<root>/mlartifacts/`; browse it with `mlflow ui --backend-store-uri sqlite:///<root>/mlflow.db`.
A finished run's model is an MLflow pyfunc model at `runs:/<run id>/model` (see mlflow_model.py).
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import tempfile
from pathlib import Path

from transferkit.files import atomic_write_text
from transferkit.tracking.base import RUN_ARTIFACTS, Tracker, final_metrics

DEFAULT_EXPERIMENT = "transferkit"
#: Name of the run-folder artifact inside a run's MLflow model (read by mlflow_model.py).
RUN_ARTIFACT = "run"
RUN_ID_FILE = Path("logs") / "mlflow.json"


def sqlite_uri(root: str | Path) -> str:
    """The default store of runs written under `root`: `sqlite:///<abs root>/mlflow.db`."""
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def artifact_location(tracking_uri: str) -> str | None:
    """`<db folder>/mlartifacts` for a SQLite store; None lets any other store choose."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return (Path(tracking_uri[len("sqlite:///"):]).parent / "mlartifacts").as_uri()


class MLflowTracker(Tracker):
    """Lightning's MLFlowLogger; a resumed run keeps logging to the same MLflow run."""

    name = "mlflow"
    description = "MLflow store (default sqlite:///<parent of --out>/mlflow.db): params, metrics, artifacts"

    def resolve(self, config, root: Path | None = None):
        if config.tracking_uri or not (config.out or root):
            return config
        return config.replace(tracking_uri=sqlite_uri(root or Path(config.out).parent))

    def make_logger(self, config, out: Path, *, version: str, resume: bool):
        from lightning.pytorch.loggers import MLFlowLogger

        saved = Path(out) / RUN_ID_FILE
        run_id = json.loads(saved.read_text())["run_id"] if resume and saved.is_file() else None
        logger = MLFlowLogger(
            experiment_name=config.experiment or DEFAULT_EXPERIMENT, run_name=Path(out).name,
            tracking_uri=config.tracking_uri, artifact_location=artifact_location(config.tracking_uri),
            run_id=run_id, tags={"transferkit.run_folder": str(Path(out).resolve()),
                                 "strategy": config.strategy, "model": config.model, "data": config.data})
        logger.log_hyperparams(config.to_dict())
        atomic_write_text(saved, json.dumps({"tracking_uri": config.tracking_uri, "run_id": logger.run_id,
                                             "experiment_id": logger.experiment_id}, indent=2))
        return logger

    def finish(self, logger, out: Path) -> None:
        client, run_id = logger.experiment, logger.run_id
        logger.log_metrics(final_metrics(out), step=0)
        for name in RUN_ARTIFACTS:
            if (Path(out) / name).is_file():
                client.log_artifact(run_id, str(Path(out) / name))
        if (Path(out) / "model").is_dir():
            log_run_model(client, run_id, Path(out))
        client.set_terminated(run_id, "FINISHED")


def log_run_model(client, run_id: str, out: Path, artifact_path: str = "model") -> None:
    """Log the run folder `out` as an MLflow pyfunc model at `runs:/<run_id>/<artifact_path>`.

    The model holds the folder's model/, config.yaml and metrics.json (what `transferkit.load_run`
    reads; checkpoints and logs stay local) and `mlflow_model.py`, which predicts from raw inputs.
    """
    import mlflow.pyfunc

    with tempfile.TemporaryDirectory(prefix="transferkit-mlflow-") as tmp:
        run_copy = Path(tmp) / RUN_ARTIFACT
        shutil.copytree(out / "model", run_copy / "model")
        for name in ("config.yaml", "metrics.json"):
            shutil.copy2(out / name, run_copy / name)
        mlflow.pyfunc.save_model(
            Path(tmp) / "model", python_model=str(Path(__file__).with_name("mlflow_model.py")),
            artifacts={RUN_ARTIFACT: str(run_copy)},
            # Stated, not inferred: inference would load and run the model in a subprocess.
            pip_requirements=[transferkit_requirement()])
        client.log_artifacts(run_id, str(Path(tmp) / "model"), artifact_path=artifact_path)


def transferkit_requirement() -> str:
    """`transferkit==<installed version>`, or plain `transferkit` when it runs from a source tree."""
    try:
        return f"transferkit=={importlib.metadata.version('transferkit')}"
    except importlib.metadata.PackageNotFoundError:
        return "transferkit"
