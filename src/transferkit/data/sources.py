"""`load_data` and `as_inputs`: one entry point for demo names, image folders, table files and Python objects."""

from __future__ import annotations

import os
from pathlib import Path

from transferkit.data.dataset import LabeledData, RawPart, check_task, from_raw_labels
from transferkit.data.demos import list_demos, load_demo
from transferkit.data.folders import load_image_folder
from transferkit.data.inputs import check_modality, describe, python_part
from transferkit.data.labels import check_label_spellings
from transferkit.data.memory import is_memory_name, recall
from transferkit.data.tables import TABLE_READERS, Columns, load_table
from transferkit.errors import ConfigError, DataError

DEMO_PREFIX = "demo:"


def load_data(
    spec,
    *,
    task: str = "classification",
    text_column: str = "text",
    image_column: str = "image",
    label_column: str | None = "label",
    skip_bad_files: bool = False,
    require_labels: bool = True,
    min_classes: int = 2,
    modality: str | None = None,
    labels=None,
) -> dict[str, LabeledData]:
    """Load a data set by name, path or Python object.

    Args:
        spec: one of
            - "demo:<name>";
            - an image folder (class subfolders, optionally inside train/, val/, test/);
            - a .csv / .jsonl / .parquet table (image paths relative to the table's folder);
            - a pandas DataFrame, read like a table (image cells may also be PIL images or arrays;
              image paths are relative to the working directory);
            - a list (or tuple, or Series) of file paths, PIL images, numpy arrays or strings, with
              `labels`. A list of strings is image file paths when `modality` is "image" and texts
              when it is "text"; without `modality` it is refused, never guessed. Arrays may be
              (H, W) or (H, W, C) uint8 or float in [0, 1];
            - a LabeledData, returned as it is;
            - the name `transferkit.data.memory.remember` gave one of these objects in this process
              (how a run's config.yaml records in-memory data).
        task: "classification" or "regression" (demos and folders are classification).
        text_column: table column holding texts; the table is text data when it exists.
        image_column: table column holding image paths.
        label_column: table column holding labels or regression targets; None leaves labels unread.
        skip_bad_files: leave unreadable images out with a warning naming each, instead of failing.
        require_labels: when False, a table without a label column, a flat folder of images or a
            list without `labels` loads with targets None.
        min_classes: the fewest classes labeled classification data may have: 2 to train on it,
            1 to evaluate or predict a holdout that holds only some of the training classes.
        modality: the modality the model reads ("image" or "text"); data of the other modality is
            refused. None lets the source decide.
        labels: one label per item of a list `spec`.

    Returns:
        {"all": data}, or the predefined parts among {"train", "val", "test"} of an image folder.
        Classification parts share one sorted class list, so indices agree across parts. Labels
        follow the rule of `transferkit.data.labels` in every format.

    Raises:
        DataError: missing or malformed data (the message says how to fix it).
        ConfigError: an unknown task, or a task the source cannot provide.
        UnknownNameError: an unknown demo name.
    """
    check_task(task)
    if is_memory_name(spec):
        spec, held_modality = recall(spec)
        modality = modality or held_modality
    columns = Columns(text_column, image_column, label_column)
    if isinstance(spec, LabeledData):
        return {"all": check_modality(spec, modality)}
    if not isinstance(spec, str | os.PathLike):
        part, found = python_part(spec, modality=modality, task=task, columns=columns, labels=labels,
                                  require_labels=require_labels, skip_bad_files=skip_bad_files)
        return _assemble({"all": part}, modality=found, task=task, name=describe(spec), min_classes=min_classes)
    if labels is not None:
        raise ConfigError("labels= is for a list of inputs; a path's labels come from its folders or label column.")
    parts = _load_path(str(spec), task=task, columns=columns, skip_bad_files=skip_bad_files,
                       require_labels=require_labels, min_classes=min_classes, modality=modality)
    for part in parts.values():
        check_modality(part, modality)
    return parts


def _load_path(spec: str, *, task: str, columns: Columns, skip_bad_files: bool, require_labels: bool,
               min_classes: int, modality: str | None) -> dict[str, LabeledData]:
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
        if modality == "text":
            raise DataError(f"{spec} is an image folder, but the model reads texts; give a table with a text column.")
        raw = load_image_folder(path, require_labels=require_labels, skip_bad_files=skip_bad_files)
        return _assemble(raw, modality="image", task=task, name=spec, min_classes=min_classes)
    part, found = load_table(
        path, task=task, text_column=columns.text, image_column=columns.image, label_column=columns.label,
        require_labels=require_labels, skip_bad_files=skip_bad_files, modality=modality,
    )
    return _assemble({"all": part}, modality=found, task=task, name=spec, min_classes=min_classes)


def as_inputs(
    obj, modality: str, *, text_column: str = "text", image_column: str = "image", skip_bad_files: bool = False,
) -> LabeledData:
    """Unlabeled inputs to predict, from anything `load_data` reads, for a model of `modality`.

    A list of strings is image file paths for an image model (each must exist) and texts for a
    text model. A bare string or path is read only when it names an existing folder or table file;
    anything else (one text, one image path) is refused with "wrap it in a list". A folder with
    predefined train/val/test parts is refused: name the part to predict. A table's label column
    is not read (a folder's class names still are).

    Raises:
        DataError: anything that cannot be read as inputs for this model, in one line.
    """
    if isinstance(obj, LabeledData):
        return check_modality(obj, modality)
    if isinstance(obj, str | os.PathLike) and not _names_source(obj):
        raise DataError(f"Got a bare string {str(obj)[:60]!r} where a list was expected; wrap it in a list: "
                        f"[...] (or give an existing image folder or table file).")
    columns = dict(text_column=text_column, image_column=image_column, label_column=None)
    parts = load_data(obj, require_labels=False, min_classes=1, modality=modality, skip_bad_files=skip_bad_files,
                      **columns)
    if len(parts) > 1:
        raise DataError(f"{obj} holds the parts {', '.join(parts)}; give one of them, e.g. {Path(obj) / 'test'}.")
    return next(iter(parts.values()))


def _names_source(obj) -> bool:
    text = os.fspath(obj)
    path = Path(text).expanduser()
    return text.startswith(DEMO_PREFIX) or path.is_dir() or path.suffix.lower() in TABLE_READERS and path.exists()


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
    check_label_spellings(classes, name)
    if len(classes) < min_classes:
        raise DataError(
            f"{name} has only one class ({', '.join(repr(c) for c in classes)}); classification needs "
            "at least two classes (check --label-column, or use --task regression for numeric targets)."
        )
    return classes
