"""Data: sources (image folders, tables, demo sets, Python objects), splits, leakage checks, transforms, loaders."""

from transferkit.data.dataset import MODALITIES, TASKS, LabeledData
from transferkit.data.demos import DEMOS, list_demos, register_demo
from transferkit.data.images import IMAGE_EXTENSIONS, open_image
from transferkit.data.leakage import LeakageReport, check_leakage, find_duplicates
from transferkit.data.loaders import SourceTargetLoader, make_loader
from transferkit.data.sources import as_inputs, load_data
from transferkit.data.splits import Splits, align_classes, make_splits
from transferkit.data.tables import TABLE_READERS
from transferkit.data.transforms import AUGMENTATIONS, build_image_transform

__all__ = [
    "AUGMENTATIONS",
    "DEMOS",
    "IMAGE_EXTENSIONS",
    "MODALITIES",
    "SourceTargetLoader",
    "TABLE_READERS",
    "TASKS",
    "LabeledData",
    "LeakageReport",
    "Splits",
    "align_classes",
    "as_inputs",
    "build_image_transform",
    "check_leakage",
    "find_duplicates",
    "list_demos",
    "load_data",
    "make_loader",
    "make_splits",
    "open_image",
    "register_demo",
]
