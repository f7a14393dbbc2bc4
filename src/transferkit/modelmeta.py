"""ModelMeta: the typed, versioned content of a run's model/transferkit.json, its only reader and writer.

It says how to rebuild the trained model without the training config: the backbone, the head,
the labels, the preprocessing and the regression-target scaling.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transferkit.backbones.base import DataSpec
from transferkit.files import atomic_write_text
from transferkit.errors import RunFolderError
from transferkit.model import TargetScaling

MODEL_META = "transferkit.json"
#: The layout written now; a folder of a newer (or unknown) version is refused rather than misread.
FORMAT_VERSION = 1

_NUMBER = (int, float)
#: key: (accepted JSON types, may be null)
_TYPES: dict[str, tuple[tuple[type, ...], bool]] = {
    "format_version": ((int,), False), "backbone": ((str,), False), "task": ((str,), False),
    "classes": ((list,), True), "modality": ((str,), False), "data_spec": ((dict,), False),
    "image_size": ((int,), True), "max_length": ((int,), True), "head": ((str,), False),
    "num_features": ((int,), False), "target_stats": ((list,), False), "precision": ((str,), False),
}


@dataclass(frozen=True)
class ModelMeta:
    """What `model/model.safetensors` holds and how to feed it.

    Attributes:
        backbone: the backbone's registered name (or `hf:`/`timm:` id).
        task: "classification" or "regression".
        classes: class names in output order (None for regression).
        modality: "image" or "text".
        data_spec: the backbone's preprocessing.
        image_size: the run's input resolution (None: the backbone's own).
        max_length: the run's token budget (None: the backbone's own).
        head: "linear" or "mlp" (scikit-learn heads are saved as their equivalent linear layer).
        num_features: the backbone's feature width.
        scaling: the regression-target standardisation (identity for classification).
        precision: "32" or "bf16".
        native: how the natively saved pieces fit together (`deploy.native.save_native_model`: the
            backbone as its own library loads it, the head beside it); None in folders written before.
            Optional, so a reader of format 1 without it keeps it in `extra`.
        extra: keys this version does not know, kept as read.
    """

    backbone: str
    task: str
    classes: list | None
    modality: str
    data_spec: DataSpec
    image_size: int | None
    max_length: int | None
    head: str
    num_features: int
    scaling: TargetScaling = TargetScaling()
    precision: str = "32"
    native: dict[str, Any] | None = None
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def outputs(self) -> int:
        return len(self.classes) if self.task == "classification" else 1

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": self.format_version, "backbone": self.backbone, "task": self.task,
                "classes": self.classes, "modality": self.modality, "data_spec": self.data_spec.to_dict(),
                "image_size": self.image_size, "max_length": self.max_length, "head": self.head,
                "num_features": self.num_features, "target_stats": list(self.scaling.as_tuple()),
                "precision": self.precision, **({"native": self.native} if self.native is not None else {}),
                **self.extra}

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / MODEL_META
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = MODEL_META) -> ModelMeta:
        """Checked: a missing key, a wrong type or an unknown format version is a RunFolderError."""
        if not isinstance(values, dict):
            raise RunFolderError(f"{source} is damaged (not a JSON object); re-run fit to rebuild it.")
        _check_version(values.get("format_version"), source)
        for key, (types, nullable) in _TYPES.items():
            if key not in values:
                raise RunFolderError(f"{source} is damaged: key {key!r} is missing; re-run fit to rebuild it.")
            value = values[key]
            if (value is None and not nullable) or (value is not None and (
                    not isinstance(value, types) or isinstance(value, bool))):
                raise RunFolderError(f"{source} is damaged: {key!r} is {value!r}, not {_kind(types)}; "
                                     "re-run fit to rebuild it.")
        stats = values["target_stats"]
        if len(stats) != 2 or not all(isinstance(v, _NUMBER) and not isinstance(v, bool) for v in stats):
            raise RunFolderError(f"{source} is damaged: 'target_stats' is {stats!r}, not [mean, std]; "
                                 "re-run fit to rebuild it.")
        try:
            spec = DataSpec.from_dict(values["data_spec"])
        except (TypeError, ValueError) as exc:
            raise RunFolderError(f"{source} is damaged: 'data_spec' ({exc}); re-run fit to rebuild it.") from None
        native = values.get("native")
        if native is not None and not isinstance(native, dict):
            raise RunFolderError(f"{source} is damaged: 'native' is {native!r}, not a mapping; re-run fit to rebuild it.")
        known = {f.name for f in dataclasses.fields(cls)} | {"target_stats"}
        return cls(backbone=values["backbone"], task=values["task"], classes=values["classes"],
                   modality=values["modality"], data_spec=spec, image_size=values["image_size"],
                   max_length=values["max_length"], head=values["head"], num_features=values["num_features"],
                   scaling=TargetScaling(float(stats[0]), float(stats[1])), precision=values["precision"],
                   native=native, format_version=values["format_version"],
                   extra={k: v for k, v in values.items() if k not in known})

    @classmethod
    def from_file(cls, folder: str | Path) -> ModelMeta:
        """The metadata of run folder `folder` (its model/transferkit.json)."""
        path = Path(folder) / "model" / MODEL_META
        if not path.is_file():
            raise RunFolderError(f"{folder} is not a transferkit run: {path} is missing. "
                                 "Point to a folder written by `transferkit fit --out`.")
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunFolderError(f"{path} is damaged ({exc}); re-run fit to rebuild it.") from None
        return cls.from_dict(values, str(path))


def _check_version(version: Any, source: str) -> None:
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RunFolderError(f"{source} has no valid format_version ({version!r}); it was not written by "
                             "transferkit fit, or was edited. Re-run fit to rebuild it.")
    if version > FORMAT_VERSION:
        raise RunFolderError(f"{source} has format_version {version}, newer than this transferkit reads "
                             f"({FORMAT_VERSION}); upgrade transferkit to load it.")


def _kind(types: tuple[type, ...]) -> str:
    return {int: "an integer", str: "a string", list: "a list", dict: "a mapping"}.get(types[0], types[0].__name__)
