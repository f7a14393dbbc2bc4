"""A finished run folder: its metrics, and the model it holds for prediction and evaluation."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import load_file

from transferkit import inference
from transferkit.backbones import create_backbone
from transferkit.config import RunConfig, load_yaml
from transferkit.data import LabeledData, align_classes, load_data
from transferkit.errors import DataError, RunFolderError
from transferkit.evaluation.metrics import task_metrics
from transferkit.loading import batches, source_options
from transferkit.model import TransferModel, make_head
from transferkit.modelmeta import ModelMeta


def load_model(folder: str | Path) -> tuple[TransferModel, ModelMeta]:
    """Rebuild the trained model of a run folder from model/ alone (no training config needed)."""
    folder = Path(folder)
    meta = ModelMeta.from_file(folder)
    if meta.modality == "text":
        from transferkit.backbones.hf import hf_backbone  # deferred: imports transformers

        backbone = hf_backbone(str(folder / "model" / "encoder"), pretrained=False, name=meta.backbone,
                               max_length=meta.data_spec.max_length)
    else:
        backbone = create_backbone(meta.backbone, pretrained=False)
    backbone.data_spec = meta.data_spec
    model = TransferModel(backbone, make_head(meta.head, meta.num_features, meta.outputs))
    model.load_state_dict(load_file(str(folder / "model" / "model.safetensors")))
    return model.eval(), meta


@dataclass
class Run:
    """A run folder written by `fit`."""

    folder: Path
    config: RunConfig
    metrics: dict[str, Any]
    _model: Any = field(default=None, repr=False)

    @classmethod
    def load(cls, folder: str | Path) -> Run:
        folder = Path(folder)
        if not folder.is_dir():
            raise RunFolderError(f"Run folder not found: {folder}.")
        ModelMeta.from_file(folder)
        metrics_path = folder / "metrics.json"
        if not metrics_path.is_file():
            raise RunFolderError(f"{folder} is an unfinished run (no metrics.json); finish it with --resume.")
        return cls(folder, RunConfig.from_dict(load_yaml(folder / "config.yaml")),
                   json.loads(metrics_path.read_text(encoding="utf-8")))

    @property
    def model(self) -> TransferModel:
        if self._model is None:
            self._model = load_model(self.folder)
        return self._model[0]

    @property
    def meta(self) -> ModelMeta:
        self.model
        return self._model[1]

    def _predict(self, data) -> tuple[np.ndarray, np.ndarray]:
        meta = self.meta
        loader = batches(self.model.backbone, data, image_size=meta.image_size, max_length=meta.max_length)
        return inference.predict(self.model, loader, task=meta.task, scaling=meta.scaling)

    def predict(self, inputs) -> list[dict[str, Any]]:
        """Predict image paths/arrays or texts (or a LabeledData); one dict per input."""
        data = inputs if isinstance(inputs, LabeledData) else LabeledData(
            list(inputs), None, self.meta.modality, self.meta.task, None, "inputs")
        if not len(data):
            raise DataError("Nothing to predict: give at least one input.")
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

    def evaluate(self, data: str, **load_options) -> dict[str, float]:
        """Metrics of this run's model on another labeled data source."""
        cfg = self.config
        parts = load_data(data, **source_options(cfg, min_classes=1, **load_options))
        merged = parts["all"] if "all" in parts else parts.get("test") or next(iter(parts.values()))
        if cfg.task == "classification":
            merged = align_classes(merged, self.meta.classes)
        preds, _ = self._predict(merged)
        return task_metrics(cfg.task, merged.targets, np.asarray(preds))

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

