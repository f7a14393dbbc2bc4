"""A finished run folder: its metrics, and the model it holds for prediction and evaluation."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transferkit.backbones import DataSpec, create_backbone
from transferkit.config import RunConfig, load_yaml
from transferkit.errors import DataError, RunFolderError
from transferkit.training.model import TransferModel, make_head
from transferkit.training.runfolder import read_model_meta


def load_model(folder: str | Path) -> tuple[TransferModel, dict[str, Any]]:
    """Rebuild the trained model of a run folder from model/ alone (no training config needed)."""
    from safetensors.torch import load_file

    from transferkit.backbones.hf import hf_backbone

    folder = Path(folder)
    meta = read_model_meta(folder)
    if meta["modality"] == "text":
        backbone = hf_backbone(str(folder / "model" / "encoder"), pretrained=False, name=meta["backbone"],
                               max_length=meta["data_spec"].get("max_length"))
    else:
        backbone = create_backbone(meta["backbone"], pretrained=False)
    backbone.data_spec = DataSpec.from_dict(meta["data_spec"])
    outputs = len(meta["classes"]) if meta["task"] == "classification" else 1
    model = TransferModel(backbone, make_head(meta["head"], meta["num_features"], outputs))
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
        read_model_meta(folder)
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
    def meta(self) -> dict[str, Any]:
        self.model
        return self._model[1]

    def _loader(self, data):
        from transferkit.data import make_loader

        backbone = self.model.backbone
        tokenize = backbone.tokenize if self.meta["modality"] == "text" else None
        return make_loader(data, spec=backbone.data_spec, tokenize=tokenize, image_size=self.meta["image_size"],
                           batch_size=64, max_length=self.meta["max_length"])

    def predict(self, inputs) -> list[dict[str, Any]]:
        """Predict image paths/arrays or texts (or a LabeledData); one dict per input."""
        from transferkit.data import LabeledData
        from transferkit.training.fit import predict_outputs

        data = inputs if isinstance(inputs, LabeledData) else LabeledData(
            list(inputs), None, self.meta["modality"], self.meta["task"], None, "inputs")
        if not len(data):
            raise DataError("Nothing to predict: give at least one input.")
        preds, scores = predict_outputs(self.model, self._loader(data), task=self.meta["task"],
                                        target_stats=tuple(self.meta["target_stats"]))
        classes = self.meta["classes"]
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
        from transferkit.data import align_classes, load_data
        from transferkit.evaluation.metrics import task_metrics
        from transferkit.training.fit import predict_outputs

        cfg = self.config
        options = dict(task=cfg.task, text_column=cfg.text_column, image_column=cfg.image_column,
                       label_column=cfg.label_column, skip_bad_files=cfg.skip_bad_files, min_classes=1)
        options.update(load_options)
        parts = load_data(data, **options)
        merged = parts["all"] if "all" in parts else parts.get("test") or next(iter(parts.values()))
        if cfg.task == "classification":
            merged = align_classes(merged, self.meta["classes"])
        preds, _ = predict_outputs(self.model, self._loader(merged), task=cfg.task,
                                   target_stats=tuple(self.meta["target_stats"]))
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
        from rich.console import Console
        from rich.table import Table

        table = Table(title="transferkit run", show_header=False)
        for key, value in self.summary_rows():
            table.add_row(key, value)
        Console(stderr=False).print(table)

