"""`load_data`: one entry point for demo names, image folders and table files."""

from __future__ import annotations

from pathlib import Path

from transferkit.data.dataset import LabeledData, RawPart, check_task, from_raw_labels
from transferkit.data.demos import list_demos, load_demo
from transferkit.data.folders import load_image_folder
from transferkit.data.tables import TABLE_READERS, load_table
from transferkit.errors import ConfigError, DataError

DEMO_PREFIX = "demo:"


def load_data(
    spec: str,
    *,
    task: str = "classification",
    text_column: str = "text",
    image_column: str = "image",
    label_column: str = "label",
    skip_bad_files: bool = False,
    require_labels: bool = True,
    min_classes: int = 2,
) -> dict[str, LabeledData]:
    """Load a data set by name or path.

    Args:
        spec: "demo:<name>", an image folder (class subfolders, optionally inside train/, val/,
            test/), or a .csv / .jsonl / .parquet table.
        task: "classification" or "regression" (tables only; demos and folders are classification).
        text_column: table column holding texts; the table is text data when it exists.
        image_column: table column holding image paths, relative to the table's folder.
        label_column: table column holding labels or regression targets.
        skip_bad_files: leave unreadable images out with a warning naming each, instead of failing.
        require_labels: when False, a table without a label column or a flat folder of images
            loads with targets None.
        min_classes: the fewest classes labeled classification data may have: 2 to train on it,
            1 to evaluate or predict a holdout that holds only some of the training classes.

    Returns:
        {"all": data}, or the predefined parts among {"train", "val", "test"} of an image folder.
        Classification parts share one sorted class list, so indices agree across parts.

    Raises:
        DataError: missing or malformed data (the message says how to fix it).
        ConfigError: an unknown task, or a task the source cannot provide.
        UnknownNameError: an unknown demo name.
    """
    check_task(task)
    spec = str(spec)
    if spec.startswith(DEMO_PREFIX):
        return {"all": _load_demo(spec, task)}
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(
            f"Data path does not exist: {spec}; give an image folder, a table "
            f"({', '.join(TABLE_READERS.names())}) or a demo name ({', '.join(list_demos())})."
        )
    if path.is_dir():
        if task != "classification":
            raise ConfigError(f"Image folder {spec} gives class labels; use --task classification or a table.")
        raw = load_image_folder(path, require_labels=require_labels, skip_bad_files=skip_bad_files)
        return _assemble(raw, modality="image", task=task, name=spec, min_classes=min_classes)
    part, modality = load_table(
        path, task=task, text_column=text_column, image_column=image_column, label_column=label_column,
        require_labels=require_labels, skip_bad_files=skip_bad_files,
    )
    return _assemble({"all": part}, modality=modality, task=task, name=spec, min_classes=min_classes)


def _load_demo(spec: str, task: str) -> LabeledData:
    data = load_demo(spec)
    if task != data.task:
        raise ConfigError(f"{spec} is a {data.task} data set; drop --task {task}.")
    return data


def _assemble(raw: dict[str, RawPart], *, modality: str, task: str, name: str,
              min_classes: int = 2) -> dict[str, LabeledData]:
    classes = _union_classes(raw, name, min_classes) if task == "classification" else None
    return {
        key: from_raw_labels(
            part.inputs, part.labels, modality=modality, task=task,
            classes=classes if part.labels is not None else None,
            name=name if key == "all" else f"{name.rstrip('/')}/{key}",
        )
        for key, part in raw.items()
    }


def _union_classes(raw: dict[str, RawPart], name: str, min_classes: int = 2) -> list[str] | None:
    labeled = [part.labels for part in raw.values() if part.labels is not None]
    if not labeled:
        return None
    classes = sorted({label for labels in labeled for label in labels})
    if len(classes) < min_classes:
        raise DataError(
            f"{name} has only one class ({', '.join(repr(c) for c in classes)}); classification needs "
            "at least two classes (check --label-column, or use --task regression for numeric targets)."
        )
    return classes
