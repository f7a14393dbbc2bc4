"""`transferkit compare` and `transferkit report` on the command line: a run, a rebuild, and every bad input."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

DIGITS = ["--data", "demo:digits", "--model", "tiny-cnn", "--image-size", "16"]


def snapshot(folder):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_compare_then_report_from_the_command_line(cli, terminal, tmp_path):
    out = tmp_path / "cmp"
    grid = ["--strategies", "scratch", "--epochs", "1", "--train-per-class", "5,all", "--seeds", "0,3"]
    result = cli("compare", *DIGITS, *grid, "--out", out)
    assert result.code == 0, result.err
    assert "[4/4] scratch-nall-seed3: fitted" in result.out and "Report:" in result.out
    assert "compare: 100%" in result.err and "4/4 [" in result.err  # one overall bar on stderr, ETA in [..<..]
    table = pd.read_csv(out / "comparison.csv", dtype={"train_per_class": str})
    assert sorted(zip(table["train_per_class"], table["seed"])) == [("5", 0), ("5", 3), ("all", 0), ("all", 3)]
    (out / "report.html").unlink()
    (out / "comparison.csv").unlink()
    rebuilt = cli("report", out)
    assert rebuilt.code == 0 and "(4 cells)" in rebuilt.out
    assert (out / "report.html").is_file()
    assert pd.read_csv(out / "comparison.csv", dtype={"train_per_class": str}).equals(table)
    again = cli("compare", *DIGITS, *grid, "--out", out)
    assert again.code == 0 and again.out.count("finished before") == 4


@pytest.mark.parametrize("args, expected", [
    (["--strategies", "feature-extraction,fulll"], "Unknown strategy 'fulll'. Did you mean 'full'?"),
    (["--strategies", "full,full"], "--strategies lists full more than once"),
    (["--strategies", "full", "--seeds", "0"], "--seeds must be at least 1 (the number of seeds), got 0"),
    (["--strategies", "full", "--seeds", "a,b"], "--seeds takes a count (3) or a list of integers"),
    (["--strategies", "full", "--train-per-class", "10,abc"], "--train-per-class takes positive integers or 'all'"),
    (["--strategies", "full", "--train-per-class", "0"], "--train-per-class takes positive integers or 'all'"),
    (["--strategies", "feature-extraction,full", "--freeze", "2"],
     "Option 'freeze' applies to none of the strategies compared (feature-extraction, full)"),
    (["--strategies", "full", "--tracker", "mlfow"], "Unknown tracker 'mlfow'. Did you mean 'mlflow'?"),
])
def test_bad_grid_is_refused_before_anything_is_written(cli_error, tmp_path, args, expected):
    message = cli_error("compare", *DIGITS, *args, "--out", tmp_path / "cmp")
    assert expected in message
    assert not (tmp_path / "cmp").exists()


def test_labels_per_class_above_the_smallest_class(cli_error, tmp_path):
    message = cli_error("compare", *DIGITS, "--strategies", "full", "--train-per-class", "10,200", "--seeds", "2",
                        "--out", tmp_path / "cmp")
    # optdigits keeps about 125 training digits per class after carving val and test.
    assert "train_per_class=200 but class" in message and "lower --train-per-class to at most" in message
    assert not (tmp_path / "cmp").exists()


def test_compare_needs_an_output_folder(cli_error):
    assert "No output folder: pass --out DIR" in cli_error("compare", *DIGITS, "--strategies", "full")


def test_a_folder_holding_a_different_comparison_is_left_alone(cli_error, mnist_comparison, tmp_path):
    folder = shutil.copytree(mnist_comparison.comparison.folder, tmp_path / "cmp")
    before = snapshot(folder)
    message = cli_error("compare", "--data", "demo:mnist", "--model", "tiny-cnn", "--image-size", "16",
                        "--strategies", "feature-extraction,full", "--train-per-class", "5,10", "--seeds", "2",
                        "--epochs", "3", "--out", folder)
    assert "holds a different comparison" in message
    assert "--epochs: 2 there, 3 now" in message
    assert "strategies: ['feature-extraction', 'full', 'scratch'] there, ['feature-extraction', 'full'] now" in message
    assert "re-run with the same options to resume it, or choose another --out" in message
    assert snapshot(folder) == before


def test_a_folder_holding_other_files_is_left_alone(cli_error, fe_image_run, copy_run):
    run = copy_run(fe_image_run)
    before = snapshot(run)
    message = cli_error("compare", *DIGITS, "--strategies", "full", "--out", run)
    assert "already holds other files (no comparison.yaml); choose another --out" in message
    assert snapshot(run) == before


def test_report_of_a_folder_that_is_not_a_comparison(cli_error, fe_image_run):
    message = cli_error("report", fe_image_run)
    assert "is not a transferkit comparison (no comparison.yaml)" in message
