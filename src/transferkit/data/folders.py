"""Image folders: class subfolders of images, optionally inside train/, val/ and test/."""

from __future__ import annotations

from pathlib import Path

from transferkit.data.dataset import RawPart
from transferkit.data.images import IMAGE_EXTENSIONS, is_image_file, keep_readable, logger
from transferkit.data.labels import check_label_spellings, label_name
from transferkit.errors import DataError

SPLIT_NAMES = ("train", "val", "test")
_IGNORED_DIRS = ("__MACOSX",)


def load_image_folder(root: Path, *, require_labels: bool, skip_bad_files: bool) -> dict[str, RawPart]:
    """Read an image folder into {"all": part} or its predefined {"train", "val", "test"} parts.

    Args:
        root: the folder.
        require_labels: refuse a flat folder of images (no class subfolders).
        skip_bad_files: leave unreadable images out with a warning instead of failing.

    Raises:
        DataError: empty folders, class folders without images, unreadable files, mixed layouts.
    """
    subdirs = _subdirs(root)
    split_dirs = [d for d in subdirs if d.name in SPLIT_NAMES]
    if not split_dirs:
        return {"all": _load_part(root, require_labels, skip_bad_files)}
    others = [d.name for d in subdirs if d.name not in SPLIT_NAMES]
    if others:
        raise DataError(
            f"Image folder {root} mixes split folders ({', '.join(d.name for d in split_dirs)}) with other "
            f"folders ({', '.join(others)}); move class folders inside train/ (and val/, test/)."
        )
    by_name = {d.name: d for d in split_dirs}
    return {name: _load_part(by_name[name], require_labels, skip_bad_files) for name in SPLIT_NAMES if name in by_name}


def _subdirs(folder: Path) -> list[Path]:
    return sorted(
        d for d in folder.iterdir()
        if d.is_dir() and not d.name.startswith(".") and d.name not in _IGNORED_DIRS
    )


def _images_in(folder: Path, *, recursive: bool) -> list[str]:
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(str(p) for p in files if is_image_file(p) and not _in_hidden_dir(p, folder))


def _in_hidden_dir(path: Path, top: Path) -> bool:
    return any(part.startswith(".") or part in _IGNORED_DIRS for part in path.relative_to(top).parts[:-1])


def _load_part(folder: Path, require_labels: bool, skip_bad_files: bool) -> RawPart:
    class_dirs = _subdirs(folder)
    if class_dirs:
        return _load_classes(folder, class_dirs, skip_bad_files)
    paths = _images_in(folder, recursive=False)
    if not paths:
        raise DataError(
            f"Image folder {folder} is empty: no class subfolders and no images "
            f"({', '.join(IMAGE_EXTENSIONS)}); put each class's images in a subfolder named after the class."
        )
    if require_labels:
        raise DataError(
            f"Image folder {folder} holds {len(paths)} images but no class subfolders, so it has no labels; "
            "put each class's images in a subfolder named after the class."
        )
    keep = keep_readable(paths, skip_bad_files=skip_bad_files, where=str(folder))
    if not keep:
        raise DataError(f"No readable images remain in {folder} after skipping unreadable files.")
    return RawPart([paths[i] for i in keep], None)


def _load_classes(folder: Path, class_dirs: list[Path], skip_bad_files: bool) -> RawPart:
    loose = _images_in(folder, recursive=False)
    if loose:
        logger.warning("Ignoring %d images directly in %s (outside any class folder), e.g. %s",
                       len(loose), folder, loose[0])
    check_label_spellings([d.name for d in class_dirs], str(folder), "class folder")
    inputs: list[str] = []
    labels: list[str] = []
    for class_dir in class_dirs:
        paths = _class_images(class_dir, folder, skip_bad_files)
        inputs += paths
        # Folder names follow the label rule of every other format: folder "1.0" is class "1".
        labels += [label_name(class_dir.name, str(folder), "class folder", 0)] * len(paths)
    return RawPart(inputs, labels)


def _class_images(class_dir: Path, folder: Path, skip_bad_files: bool) -> list[str]:
    paths = _images_in(class_dir, recursive=True)
    if not paths:
        raise DataError(
            f"Class folder {class_dir.name!r} in {folder} has no images ({', '.join(IMAGE_EXTENSIONS)}); "
            "add images or remove the folder."
        )
    keep = keep_readable(paths, skip_bad_files=skip_bad_files, where=f"class folder {class_dir}")
    if not keep:
        raise DataError(
            f"Class folder {class_dir.name!r} in {folder} has no readable images left after skipping "
            "unreadable files; add images or remove the folder."
        )
    return [paths[i] for i in keep]
