"""A finished run folder: its metrics, and the model it holds for prediction and evaluation."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.torch import load_file

from transferkit import inference
from transferkit.backbones import BACKBONES, create_backbone
from transferkit.backbones.objects import PREFIX as OBJECT_PREFIX
from transferkit.backbones.objects import backbone_from_object
from transferkit.backbones.timm import timm_backbone
from transferkit.config import RunConfig, load_yaml
from transferkit.data import LabeledData, align_classes, as_inputs, load_data
from transferkit.errors import ConfigError, RunFolderError, WeightsFileError
from transferkit.evaluation.metrics import task_metrics
from transferkit.loading import batches, source_options
from transferkit.model import TransferModel, make_head
from transferkit.modelmeta import ModelMeta


def load_model(folder: str | Path, model=None) -> tuple[TransferModel, ModelMeta]:
    """Rebuild the trained model of a run folder from model/ alone (no training config needed).

    Args:
        model: the nn.Module a run of a plain-module backbone was fitted with (its architecture;
            the trained weights come from the folder). Not needed for registered, timm or
            transformers backbones.
    """
    folder = Path(folder)
    meta = ModelMeta.from_file(folder)
    backbone = _backbone(folder, meta, model)
    backbone.data_spec = meta.data_spec
    trained = TransferModel(backbone, make_head(meta.head, meta.num_features, meta.outputs))
    try:
        trained.load_state_dict(_trained_weights(folder / "model" / "model.safetensors"))
    except RuntimeError as exc:  # shapes or names that the metadata does not describe
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise RunFolderError(f"{folder / 'model'} holds weights that do not fit the model its transferkit.json "
                             f"describes ({first[:120]}); the folder was edited or mixed. Re-run fit to "
                             "rebuild it.") from None
    return trained.eval(), meta


def _trained_weights(path: Path) -> dict:
    """The run's safetensors state dict, or one WeightsFileError line for a missing or damaged file."""
    if not path.is_file():
        raise WeightsFileError(f"{path} is missing; the run folder is incomplete. Re-run fit to rebuild it.")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsFileError(f"{path} is damaged ({' '.join(str(exc).split())[:100]}); restore it or "
                               "re-run fit to rebuild it.") from None


def _backbone(folder: Path, meta: ModelMeta, model):
    if meta.modality == "text":
        from transferkit.backbones.hf import hf_backbone  # deferred: imports transformers

        return hf_backbone(str(folder / "model" / "encoder"), pretrained=False, name=meta.backbone,
                           max_length=meta.data_spec.max_length)
    if model is not None:
        return backbone_from_object(model, name=meta.backbone, num_features=meta.num_features)
    if meta.backbone in BACKBONES.names() or not meta.backbone.startswith(OBJECT_PREFIX):
        return create_backbone(meta.backbone, pretrained=False)
    native = (meta.native or {}).get("backbone") or {}
    if native.get("library") == "timm":  # a timm model object: its architecture is recorded
        return timm_backbone(native["architecture"], pretrained=False, name=meta.backbone)
    raise RunFolderError(f"{folder} was fitted on a model object ({meta.backbone}) that transferkit cannot rebuild "
                         "alone; load it with Run.load(folder, model=the_same_module).")


@dataclass(frozen=True)
class Evaluation:
    """A run's model scored on labeled data.

    Attributes:
        metrics: the task's metrics (accuracy, macro F1, ... or MAE, RMSE, R2).
        per_class: {class: {"precision", "recall", "f1", "support"}} (classification; else empty).
        n: items scored.
        data: the data's name.
    """

    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]]
    n: int
    data: str

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data, "n": self.n, "metrics": self.metrics, "per_class": self.per_class}

    def print_table(self) -> None:
        """Per-class precision, recall, F1 and support (classification), then the overall metrics."""
        from rich.console import Console  # deferred: only printing needs rich
        from rich.table import Table

        console = Console()
        if self.per_class:
            table = Table(title=f"per class on {self.data}")
            for column in ("class", "precision", "recall", "F1", "support"):
                table.add_column(column, justify="left" if column == "class" else "right")
            for name, row in self.per_class.items():
                table.add_row(str(name), f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}",
                              str(row["support"]))
            console.print(table)
        overall = Table(title=f"overall ({self.n} items)", show_header=False)
        for key, value in self.metrics.items():
            overall.add_row(key, f"{value:.4f}")
        console.print(overall)


def per_class_scores(targets, preds, classes: list[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of each class (scikit-learn's, 0 where undefined)."""
    from sklearn.metrics import precision_recall_fscore_support  # deferred: scikit-learn is slow to import

    labels = list(range(len(classes)))
    p, r, f, n = precision_recall_fscore_support(targets, preds, labels=labels, zero_division=0)
    return {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(n[i])}
            for i, name in enumerate(classes)}


@dataclass
class Run:
    """A run folder written by `fit`."""

    folder: Path
    config: RunConfig
    metrics: dict[str, Any]
    _model: Any = field(default=None, repr=False)
    _module: Any = field(default=None, repr=False)

    @classmethod
    def load(cls, folder: str | Path, *, model=None) -> Run:
        """The run in `folder`; `model` is the nn.Module a plain-module run was fitted with (see `load_model`)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise RunFolderError(f"Run folder not found: {folder}.")
        ModelMeta.from_file(folder)
        metrics_path = folder / "metrics.json"
        if not metrics_path.is_file():
            raise RunFolderError(f"{folder} is an unfinished run (no metrics.json); finish it with --resume.")
        run = cls(folder, RunConfig.from_dict(load_yaml(folder / "config.yaml")),
                  json.loads(metrics_path.read_text(encoding="utf-8")))
        run._module = model
        return run

    @property
    def model(self) -> TransferModel:
        if self._model is None:
            self._model = load_model(self.folder, self._module)
        return self._model[0]

    @property
    def meta(self) -> ModelMeta:
        self.model
        return self._model[1]

    @property
    def classes_(self) -> np.ndarray:
        """The class names in the order of `predict_proba`'s columns (scikit-learn's attribute)."""
        if self.meta.task != "classification":
            raise AttributeError("A regression run has no classes_.")
        return np.asarray(self.meta.classes)

    def _predict(self, data) -> tuple[np.ndarray, np.ndarray]:
        meta = self.meta
        loader = batches(self.model.backbone, data, image_size=meta.image_size, max_length=meta.max_length)
        return inference.predict(self.model, loader, task=meta.task, scaling=meta.scaling)

    def _inputs(self, inputs, text_column: str | None, image_column: str | None, skip_bad_files: bool) -> LabeledData:
        cfg = self.config
        return as_inputs(inputs, self.meta.modality, text_column=text_column or cfg.text_column,
                         image_column=image_column or cfg.image_column, skip_bad_files=skip_bad_files)

    def predict(self, inputs, *, text_column: str | None = None, image_column: str | None = None,
                skip_bad_files: bool = False) -> list[dict[str, Any]]:
        """One dict per input: input (path or text; `item<i>` otherwise), prediction, and for classification
        the probability of the prediction and of each class (`p_<class>`).

        Args:
            inputs: a list of image paths, PIL images, numpy arrays or texts (as the model reads); a pandas
                DataFrame, table file or image folder (column names as at fit, or given here); a LabeledData.
            skip_bad_files: leave unreadable image files out (with a warning naming each) instead of failing.
        """
        data = self._inputs(inputs, text_column, image_column, skip_bad_files)
        preds, scores = self._predict(data)
        classes = self.meta.classes
        rows = []
        for i, item in enumerate(data.inputs):
            name = item if isinstance(item, str) else f"item{i}"
            if classes:
                row = {"input": name, "prediction": classes[preds[i]], "probability": float(scores[i].max())}
                row.update({f"p_{c}": float(p) for c, p in zip(classes, scores[i])})
            else:
                row = {"input": name, "prediction": float(preds[i])}
            rows.append(row)
        return rows

    def predict_proba(self, inputs, *, text_column: str | None = None, image_column: str | None = None,
                      skip_bad_files: bool = False) -> np.ndarray:
        """Class probabilities, (n_inputs, n_classes), columns in the order of `classes_`.

        Raises:
            ConfigError: a regression run (it predicts values: use `predict`).
        """
        if self.meta.task != "classification":
            raise ConfigError("A regression run has no class probabilities; use run.predict(inputs).")
        return self._predict(self._inputs(inputs, text_column, image_column, skip_bad_files))[1]

    def evaluate(self, data, **load_options) -> dict[str, float]:
        """Metrics of this run's model on other labeled data (anything `fit` takes as data)."""
        return self.evaluation(data, **load_options).metrics

    def evaluation(self, data, **load_options) -> Evaluation:
        """Metrics, per-class precision / recall / F1 (classification) and the item count on labeled `data`.

        Args:
            data: a path, demo name, DataFrame or list (with `labels=`), as `load_data` reads.
            load_options: `load_data` keywords (text_column, image_column, label_column, labels, ...).
        """
        cfg = self.config
        options = {k: v for k, v in load_options.items() if v is not None}
        parts = load_data(data, **source_options(cfg, min_classes=1, modality=self.meta.modality, **options))
        merged = parts["all"] if "all" in parts else parts.get("test") or next(iter(parts.values()))
        if cfg.task == "classification":
            merged = align_classes(merged, self.meta.classes)
        preds, _ = self._predict(merged)
        metrics = task_metrics(cfg.task, merged.targets, np.asarray(preds))
        per_class = per_class_scores(merged.targets, preds, self.meta.classes) if self.meta.classes else {}
        return Evaluation(metrics, per_class, len(merged), merged.name)

    def summary_rows(self) -> list[tuple[str, str]]:
        m = self.metrics
        rows = [("model", m["model"]), ("strategy", m["strategy"])]
        choice = m.get("strategy_choice")
        if choice:  # the configured strategy chose this one from the data
            rows[-1] = ("strategy", f"{m['strategy']} (chosen by {choice['by']})")
            rows += [(f"{choice['by']}: why" if i == 0 else "", reason) for i, reason in enumerate(choice["reasons"])]
        rows.append(("train / val / test", f"{m['n_train']} / {m['n_val']} / {m['n_test']}"))
        for split in ("val", "test"):
            for key, value in m.get(split, {}).items():
                rows.append((f"{split}/{key}", f"{value:.4f}"))
        if m.get("target_data"):
            rows += self._domain_rows()
        rows += [("trainable params", f"{m['trainable_params']:,} of {m['total_params']:,}"),
                 ("epochs", str(m["epochs_run"])), ("train time", f"{m['train_seconds']:.1f} s"),
                 ("run folder", str(self.folder))]
        return rows

    def _domain_rows(self) -> list[tuple[str, str]]:
        m = self.metrics
        rows = [("target domain", f"{m['target_data']} ({m['n_target']} unlabeled samples)"),
                ("model selection", f"{m['model_selection']} (target labels never choose the model)")]
        gap = m.get("domain_gap")
        if gap:
            rows.append(("domain gap (proxy A-distance)", f"{gap['proxy_a_distance_before']:.3f} before -> "
                         f"{gap['proxy_a_distance_after']:.3f} after training (0: same, 2: separable)"))
        return rows

    def print_summary(self) -> None:
        from rich.console import Console  # deferred: only printing needs rich
        from rich.table import Table

        table = Table(title="transferkit run", show_header=False)
        for key, value in self.summary_rows():
            table.add_row(key, value)
        Console(stderr=False).print(table)

