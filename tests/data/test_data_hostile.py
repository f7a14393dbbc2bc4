"""Files that are not what they seem: FIFOs, devices, folders, images whose pixels do not decode."""

import io
import logging
import os
import signal

import numpy as np
import pytest
from PIL import Image

from transferkit.data import load_data, open_image
from transferkit.errors import DataError

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")


@pytest.fixture(autouse=True)
def no_hang():
    """Turn a blocked open() into a test failure after 20 s instead of a hung suite."""
    def fail(signum, frame):
        raise TimeoutError("loading blocked (opened a FIFO?)")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def noise_image(path, fmt: str, size: int = 64):
    """A random-noise image (so it does not compress to a few bytes), written in `fmt`."""
    array = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(array).save(path, format=fmt)
    return path


def truncate(path, keep: float = 0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


# Only regular files are opened

def test_fifo_named_in_a_table_row_is_refused(tmp_path, make_image):
    make_image(tmp_path / "a.png")
    os.mkfifo(tmp_path / "pipe.png")
    table = tmp_path / "t.csv"
    table.write_text("image,label\na.png,x\npipe.png,y\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"pipe\.png \(a FIFO \(named pipe\), not a regular file\)"):
        load_data(str(table))


def test_device_and_folder_named_in_a_table_are_refused(tmp_path, make_image):
    make_image(tmp_path / "a.png")
    os.symlink("/dev/null", tmp_path / "null.png")
    (tmp_path / "dir.png").mkdir()
    table = tmp_path / "t.csv"
    table.write_text("image,label\na.png,x\nnull.png,y\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"null\.png \(a character device, not a regular file\)"):
        load_data(str(table))
    table.write_text("image,label\na.png,x\ndir.png,y\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"dir\.png \(a folder, not a regular file\)"):
        load_data(str(table))


def test_fifo_in_a_class_folder_is_named_or_skipped(image_folder, caplog):
    os.mkfifo(image_folder / "cat" / "stuck.jpg")
    with pytest.raises(DataError, match=r"stuck\.jpg \(a FIFO \(named pipe\), not a regular file\)"):
        load_data(str(image_folder))
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        data = load_data(str(image_folder), skip_bad_files=True)["all"]
    assert data.class_counts() == {"cat": 3, "dog": 4}
    assert any("stuck.jpg" in r.getMessage() and "FIFO" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_table_path_that_is_a_fifo_is_refused(tmp_path, suffix):
    os.mkfifo(tmp_path / f"data{suffix}")
    with pytest.raises(DataError, match=rf"data\{suffix} is a FIFO \(named pipe\), not a regular file"):
        load_data(str(tmp_path / f"data{suffix}"))


def test_list_of_paths_naming_a_fifo_is_refused(tmp_path, make_image):
    good = make_image(tmp_path / "a.png")
    os.mkfifo(tmp_path / "p.png")
    with pytest.raises(DataError, match=r"p\.png \(a FIFO"):
        load_data([str(good), str(tmp_path / "p.png")], modality="image", labels=["x", "y"])


def test_open_image_refuses_a_fifo_at_training_time(tmp_path):
    os.mkfifo(tmp_path / "late.png")
    with pytest.raises(DataError, match=r"late\.png \(a FIFO \(named pipe\), not a regular file\)"):
        open_image(str(tmp_path / "late.png"))


# Images whose header reads but whose pixels do not decode

@pytest.mark.parametrize("fmt, suffix", [("PNG", ".png"), ("JPEG", ".jpg")])
def test_truncated_image_is_named_without_the_flag(image_folder, fmt, suffix):
    bad = truncate(noise_image(image_folder / "dog" / f"cut{suffix}", fmt))
    with Image.open(bad) as header_only:  # the header still reads: a header check alone would pass it
        assert header_only.size == (64, 64)
    with pytest.raises(DataError, match=rf"Unreadable image file .*cut\{suffix} \(.*\) in class folder "
                                        ".*--skip-bad-files"):
        load_data(str(image_folder))


def test_truncated_images_are_skipped_by_name_with_the_flag(image_folder, caplog):
    truncate(noise_image(image_folder / "dog" / "cut.png", "PNG"))
    truncate(noise_image(image_folder / "cat" / "cut.jpg", "JPEG"))
    noise_image(image_folder / "cat" / "whole.jpg", "JPEG")
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        data = load_data(str(image_folder), skip_bad_files=True)["all"]
    assert data.class_counts() == {"cat": 4, "dog": 4}
    skipped = sorted(r.getMessage() for r in caplog.records if r.getMessage().startswith("Skipping"))
    assert len(skipped) == 2
    assert "cut.jpg" in skipped[0] and "cut.png" in skipped[1]
    assert not any(p.endswith("cut.png") or p.endswith("cut.jpg") for p in data.inputs)


def test_truncated_image_in_a_table_is_skipped(tmp_path, make_image):
    make_image(tmp_path / "a.png")
    make_image(tmp_path / "b.png")
    truncate(noise_image(tmp_path / "c.png", "PNG"))
    table = tmp_path / "t.csv"
    table.write_text("image,label\na.png,x\nb.png,y\nc.png,y\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"c\.png"):
        load_data(str(table))
    assert load_data(str(table), skip_bad_files=True)["all"].class_counts() == {"x": 1, "y": 1}


def test_whole_noise_images_pass_the_decode_check(image_folder):
    noise_image(image_folder / "cat" / "n.png", "PNG")
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(buffer, format="BMP")
    (image_folder / "dog" / "z.bmp").write_bytes(buffer.getvalue())
    assert load_data(str(image_folder))["all"].class_counts() == {"cat": 4, "dog": 5}
