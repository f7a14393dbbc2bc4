"""Data: sources (image folders, tables, demo sets), splits, image transforms and loaders."""

from transferkit.data.dataset import MODALITIES, TASKS, LabeledData
from transferkit.data.demos import DEMOS, list_demos, register_demo
from transferkit.data.images import IMAGE_EXTENSIONS, open_image
from transferkit.data.loaders import SourceTargetLoader, make_loader
from transferkit.data.sources import load_data
from transferkit.data.splits import align_classes, make_splits
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
    "align_classes",
    "build_image_transform",
    "list_demos",
    "load_data",
    "make_loader",
    "make_splits",
    "open_image",
    "register_demo",
]
