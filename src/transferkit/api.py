"""The Python API the CLI is a thin layer over."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transferkit import tracking
from transferkit.backbones import get_backbone_entry, register_model_object
from transferkit.config import RunConfig, load_yaml
from transferkit.data import load_data
from transferkit.data.memory import is_in_memory, remember
from transferkit.errors import ConfigError, RunFolderError
from transferkit.options import build_config
from transferkit.runs import Run

__all__ = ["build_config", "compare", "completed_config", "evaluate", "export", "fit", "load_run", "predict", "rank", "report", "resume", "tune"]

_DATA_OPTIONS = ("data", "test_data", "target_data")


def with_objects(config: RunConfig | str | Path | None, options: dict[str, Any]) -> dict[str, Any]:
    """`options` with Python objects replaced by the names a config records.

    A model object (timm model, transformers `(model, tokenizer)` or model with `tokenizer=`, nn.Module
    with `num_features=`) is registered as a backbone; a DataFrame or list given as data, test_data or
    target_data is remembered for this process and recorded as `<DataFrame: 60 rows, fingerprint ...>`
    (a run on in-memory data cannot be resumed in another process: it says so in one line).
    """
    options = dict(options)
    tokenizer, num_features = options.pop("tokenizer", None), options.pop("num_features", None)
    model = options.get("model")
    if model is not None and not isinstance(model, str):
        options["model"] = register_model_object(model, tokenizer=tokenizer, num_features=num_features)
    elif tokenizer is not None or num_features is not None:
        raise ConfigError("tokenizer= and num_features= describe a model object; give model=<the object> with them.")
    in_memory = [key for key in _DATA_OPTIONS if is_in_memory(options.get(key))]
    labels = options.pop("labels", None)
    if labels is not None and "data" not in in_memory:
        raise ConfigError("labels= goes with data=<a list of inputs>; a path or DataFrame carries its own labels.")
    if in_memory:
        name = options.get("model") or _config_model(config)
        modality = get_backbone_entry(name).modality if name else None
        for key in in_memory:
            value = options[key]
            if key == "data" and labels is not None:
                task = options.get("task") or (build_config(config).task if config is not None else "classification")
                value = load_data(value, labels=labels, modality=modality, task=task)["all"]
            options[key] = remember(value, modality)
    return options


def _config_model(config) -> str | None:
    if isinstance(config, RunConfig):
        return config.model
    return load_yaml(config).get("model") if config is not None else None


def fit(config: RunConfig | str | Path | None = None, *, resume: bool = False, progress: bool = True,
        callbacks: list | None = None, **options: Any) -> Run:
    """Adapt a pretrained backbone to labeled data and write a run folder.

    `data`, `test_data` and `target_data` take a path or demo name, a pandas DataFrame (columns as
    `text_column`, `image_column`, `label_column` say), or a list of file paths, PIL images, numpy arrays
    or texts; a list given as `data` takes its labels from `labels=` (one per item; test_data as a list
    would have none: give it as a DataFrame), and `target_data` needs none.
    `model` takes a backbone name, a timm model, a transformers model with `tokenizer=` (or a
    `(model, tokenizer)` pair), or any nn.Module returning (batch, features) with `num_features=`.
    `callbacks` are extra Lightning callbacks for the trainer (e.g. tune's pruning callback).
    With `devices`/`num_nodes` above 1 it trains under DDP; processes other than rank 0 return None.

    Example:
        run = transferkit.fit(data="demo:mnist", model="efficientnet_lite0",
                              strategy="feature-extraction", image_size=64, out="runs/fe")
        run.metrics["test"]["accuracy"]; run.predict(["digit.png"])
    """
    from transferkit.training.fit import fit as _fit  # deferred: the engine imports lightning

    return _fit(build_config(config, **with_objects(config, options)), resume=resume, progress=progress,
                callbacks=callbacks)


def completed_config(config: RunConfig | str | Path | None = None, **options: Any) -> RunConfig:
    """The config `fit` would save: the strategy's defaults and the tracker's store filled in (nothing trains).

    A strategy that chooses from the data (`auto`) is shown as given; the run folder saves its choice.
    """
    from transferkit.training.plan import complete_config  # deferred: the engine imports lightning

    return tracking.resolve(complete_config(build_config(config, **with_objects(config, options)))[0])


def resume(folder: str | Path, *, progress: bool = True, **options: Any) -> Run:
    """Continue an interrupted run from its last checkpoint, with the config saved in it.

    `options` (fit's keywords, as given to the CLI with --resume) must equal the saved config's:
    a resume never quietly trains with other settings. None means not given.

    Raises:
        RunFolderError: `folder` is not an unfinished run, an option differs from its saved config,
            or its data changed since the run began.
    """
    from transferkit.training.fit import fit as _fit  # deferred: the engine imports lightning
    from transferkit.training.runfolder import check_same_config  # deferred with the engine

    saved = Path(folder) / "config.yaml"
    if not saved.is_file():
        raise RunFolderError(f"Cannot resume: {folder} is not a transferkit run (no config.yaml).")
    # The folder given wins over the saved `out`: a run folder may have been moved or copied.
    config = RunConfig.from_dict({**load_yaml(saved), "out": str(folder)})
    given = {k: v for k, v in options.items() if v is not None}
    if given:
        wanted = build_config(config, **given).to_dict()
        check_same_config(Path(folder), {k: v for k, v in wanted.items() if k in given or k == "strategy_options"})
    return _fit(config, resume=True, progress=progress)


def load_run(folder: str | Path, *, model=None) -> Run:
    """The run in `folder`; `model` only for a run fitted on a plain nn.Module (its architecture)."""
    return Run.load(folder, model=model)


def evaluate(folder: str | Path, data, **load_options: Any) -> dict[str, float]:
    """Metrics of a run's model on labeled `data` (anything `fit` takes as data)."""
    return Run.load(folder).evaluate(data, **load_options)


def predict(folder: str | Path, inputs, **columns: Any) -> list[dict[str, Any]]:
    """A run's predictions for `inputs` (see `Run.predict`)."""
    return Run.load(folder).predict(inputs, **columns)


def compare(config: RunConfig | str | Path | None = None, *, strategies, train_per_class=None, seeds=3,
            out: str | Path | None = None, progress: bool = True, **options: Any):
    """Fit each strategy at each number of labels per class and seed; write comparison.csv and a report.

    Every `fit` option passes through to each cell. Re-running the same call skips finished cells.

    Example:
        cmp = transferkit.compare(data="demo:mnist", model="efficientnet_lite0",
                                  strategies="feature-extraction,full,scratch", train_per_class="10,50",
                                  seeds=3, image_size=64, out="runs/cmp-mnist")
        cmp.table  # comparison.csv;  cmp.report_html
    """
    from transferkit.workflows.compare import compare as _compare  # deferred: the engine imports lightning

    return _compare(config, strategies=strategies, train_per_class=train_per_class, seeds=seeds, out=out,
                    progress=progress, **with_objects(config, options))


def report(folder: str | Path):
    """Rebuild comparison.csv, report.md and report.html of a comparison folder from its finished cells."""
    from transferkit.workflows.compare import report as _report  # deferred: reports import matplotlib

    return _report(folder)


def rank(data, models, **options: Any):
    """Score candidate backbones on `data` from their frozen features (LogME, H-score, LEEP, NCE), best first.

    See `transferkit.workflows.ranking.rank` for the options.

    Example:
        ranking = transferkit.rank("demo:mnist", "efficientnet_lite0,efficientnet_lite1", train_per_class=50,
                                   image_size=64, control=True)
        ranking.rows[0]["model"]
    """
    from transferkit.workflows.ranking import rank as _rank  # deferred: the engine imports lightning

    if is_in_memory(data):  # a DataFrame or list: read as the first candidate's modality reads it
        first = (models.split(",") if isinstance(models, str) else list(models))[0].strip()
        data = remember(data, get_backbone_entry(first.removesuffix("@random")).modality)
    return _rank(data, models, **options)


def export(folder: str | Path, *, format: str = "onnx", tolerance: float = 1e-4, input_dtype: str = "float32",
           opset: int = 17):
    """Export a run's model to FOLDER/export/ and check ONNX Runtime reproduces PyTorch within `tolerance`.

    Example:
        result = transferkit.export("runs/fe", format="onnx")
        result.model_path, result.max_abs_diff
    """
    from transferkit.workflows.export import export as _export  # deferred: imports onnx

    return _export(folder, format=format, tolerance=tolerance, input_dtype=input_dtype, opset=opset)


def tune(config: RunConfig | str | Path | None = None, *, out: str | Path, trials: int = 20,
         strategies="full,l2sp,gradual", **options: Any):
    """Search lr, strategy and strategy options with Optuna; the study resumes from OUT/study.db.

    Every other `fit` option passes through to each trial (see `transferkit.workflows.tune.tune` for the rest).

    Example:
        result = transferkit.tune(data="demo:mnist", model="efficientnet_lite0", image_size=64,
                                  train_per_class=20, epochs=5, trials=20, out="runs/tune-mnist")
        result.best_params, result.best_run
    """
    from transferkit.workflows.tune import tune as _tune  # deferred: imports optuna and lightning

    return _tune(config, out=out, trials=trials, strategies=strategies, **with_objects(config, options))
