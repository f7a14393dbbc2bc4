"""`rank` end to end on a small slice of demo:digits with the tiny backbones, and its user-facing errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

import transferkit
from transferkit.errors import ConfigError, RunFolderError, UnknownNameError
from transferkit.workflows import ranking as rank_module

SLICE = dict(train_per_class=10, image_size=16, val_fraction=0.1, test_fraction=0.1)
SLICE_FLAGS = ["--train-per-class", 10, "--image-size", 16, "--val-fraction", 0.1, "--test-fraction", 0.1]


@pytest.fixture
def with_source_classifier(monkeypatch):
    """tiny-cnn given a seeded 7-class source classifier, as timm backbones keep their ImageNet one."""
    original = rank_module.candidate_backbone

    def build(config, name, modality):
        backbone = original(config, name, modality)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            object.__setattr__(backbone, "source_classifier", torch.nn.Linear(backbone.num_features, 7))
        return backbone

    monkeypatch.setattr(rank_module, "candidate_backbone", build)


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    """tiny-cnn and its random control on 100 digits, each fine-tuned for one epoch."""
    out = tmp_path_factory.mktemp("rank")
    ranking = transferkit.rank("demo:digits", "tiny-cnn", control=True, validate=True, validate_epochs=1,
                               out=str(out), progress=False, **SLICE)
    return ranking, out


def test_cli_rank_prints_the_table_and_writes_ranking_csv(cli, tmp_path):
    result = cli("rank", "--data", "demo:digits", "--models", "tiny-cnn,tiny-cnn@random", "--out", tmp_path,
                 *SLICE_FLAGS)
    assert result.code == 0, result.err
    assert "ranked by logme (100 samples)" in result.out and "tiny-cnn@random" in result.out
    assert f"Wrote {tmp_path / 'ranking.csv'}" in result.out
    table = pd.read_csv(tmp_path / "ranking.csv")
    assert set(table["model"]) == {"tiny-cnn", "tiny-cnn@random"}
    assert table["logme"].tolist() == sorted(table["logme"], reverse=True)
    assert table["samples"].tolist() == [100, 100] and table["features"].tolist() == [32, 32]
    assert table.set_index("model")["pretrained"].to_dict() == {"tiny-cnn": True, "tiny-cnn@random": False}
    assert table[["leep", "nce", "leep_s", "nce_s"]].isna().all().all()  # tiny-cnn keeps no source classifier
    assert (table[["features_s", "logme_s", "hscore_s"]] >= 0).all().all()


def test_source_scores_are_computed_for_a_backbone_with_a_source_classifier(with_source_classifier):
    ranking = transferkit.rank("demo:digits", ["tiny-cnn"], sort_by="nce", progress=False, **SLICE)
    row = ranking.rows[0]
    assert -10 < row["leep"] <= 0 and -10 < row["nce"] <= 0
    assert row["leep_s"] >= 0 and row["nce_s"] >= 0


def test_rows_are_sorted_by_the_chosen_score(with_source_classifier):
    ranking = transferkit.rank("demo:digits", ["tiny-cnn", "tiny-cnn@random"], scores="hscore,leep",
                               sort_by="hscore", progress=False, **SLICE)
    assert ranking.scores == ["hscore", "leep"] and "logme" not in ranking.rows[0]
    assert [r["hscore"] for r in ranking.rows] == sorted((r["hscore"] for r in ranking.rows), reverse=True)


def test_ranking_is_repeatable_and_reads_the_feature_cache():
    first = transferkit.rank("demo:digits", ["tiny-cnn", "tiny-cnn@random"], progress=False, **SLICE)
    second = transferkit.rank("demo:digits", ["tiny-cnn", "tiny-cnn@random"], progress=False, **SLICE)
    assert [(r["model"], r["logme"], r["hscore"]) for r in first.rows] == [
        (r["model"], r["logme"], r["hscore"]) for r in second.rows]


def test_validate_fine_tunes_each_candidate_and_correlates_the_scores(validated):
    ranking, out = validated
    rows = {r["model"]: r for r in ranking.rows}
    assert rows["tiny-cnn"]["finetune_strategy"] == "full"
    assert rows["tiny-cnn@random"]["finetune_strategy"] == "scratch"
    assert all(0 <= r["accuracy"] <= 1 and r["accuracy_split"] == "test" for r in ranking.rows)
    assert (out / "validate" / "tiny-cnn" / "metrics.json").is_file()
    assert (out / "validate" / "tiny-cnn@random" / "metrics.json").is_file()
    for score in ("logme", "hscore"):
        assert ranking.correlations[score]["n"] == 2 and abs(ranking.correlations[score]["kendall_tau"]) == 1
    assert ranking.correlations["leep"] == {"kendall_tau": None, "p_value": None, "n": 0}
    saved = json.loads((out / "ranking.json").read_text())
    assert saved["correlations"] == ranking.correlations and saved["sort_by"] == "logme"
    assert "accuracy" in pd.read_csv(out / "ranking.csv").columns


def test_validate_reuses_finished_runs_and_refuses_runs_with_other_settings(validated):
    ranking, out = validated
    metrics = out / "validate" / "tiny-cnn" / "metrics.json"
    written = metrics.stat().st_mtime_ns
    again = transferkit.rank("demo:digits", "tiny-cnn", control=True, validate=True, validate_epochs=1,
                             out=str(out), progress=False, **SLICE)
    assert metrics.stat().st_mtime_ns == written
    assert [r["accuracy"] for r in again.rows] == [r["accuracy"] for r in ranking.rows]
    with pytest.raises(RunFolderError, match=r"holds a validation run with other settings \(epochs\)"):
        transferkit.rank("demo:digits", "tiny-cnn", validate=True, validate_epochs=2, out=str(out),
                         progress=False, **SLICE)


def test_validate_shows_one_overall_bar(validated, capsys, terminal):
    _, out = validated
    transferkit.rank("demo:digits", "tiny-cnn", control=True, validate=True, validate_epochs=1, out=str(out),
                     progress=True, **SLICE)
    err = capsys.readouterr().err
    assert "rank --validate: 100%" in err and "2/2 [" in err


# ---- errors -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("argv", "message"), [
    (["--scores", "logme,hscor"], r"Unknown transferability score 'hscor'\. Did you mean 'hscore'\?"),
    (["--scores", "hscore"], r"--sort-by logme is not among the computed scores \(hscore\); add it to --scores\."),
    (["--models", "tiny-cnn,tiny-cnn"], r"Backbone 'tiny-cnn' is listed twice in --models"),
    (["--models", "tiny-text"], r"Backbone 'tiny-text' reads text but demo:digits holds image; rank image backbones"),
    (["--models", "tiny-cn"], r"Unknown backbone 'tiny-cn'\. Did you mean 'tiny-cnn'"),
])
def test_cli_rank_errors_say_what_to_fix(cli_error, tmp_path, argv, message):
    defaults = {"--models": "tiny-cnn"}
    flags = dict(zip(argv[::2], argv[1::2]))
    line = cli_error("rank", "--data", "demo:digits", *sum(([k, v] for k, v in {**defaults, **flags}.items()), []),
                     "--out", tmp_path, *SLICE_FLAGS)
    assert pytest.importorskip("re").search(message, line), line


def test_api_errors():
    with pytest.raises(ConfigError, match=r"--validate fine-tunes every candidate into run folders; pass --out DIR"):
        transferkit.rank("demo:digits", "tiny-cnn", validate=True, progress=False, **SLICE)
    with pytest.raises(ConfigError, match=r"Unknown config key 'train_per_clas'\. Did you mean 'train_per_class'"):
        transferkit.rank("demo:digits", "tiny-cnn", train_per_clas=10, progress=False)
    with pytest.raises(ConfigError, match=r"rank sets 'strategy' itself"):
        transferkit.rank("demo:digits", "tiny-cnn", strategy="full", progress=False)
    with pytest.raises(ConfigError, match=r"rank needs at least one backbone"):
        transferkit.rank("demo:digits", " , ", progress=False)
    with pytest.raises(UnknownNameError, match=r"Unknown transferability score 'nec'"):
        transferkit.rank("demo:digits", "tiny-cnn", sort_by="nec", progress=False)


# ---- real weights: a random init ranks last ---------------------------------------------------------
@pytest.mark.integration
def test_pretrained_efficientnet_outranks_its_random_copy(tmp_path, monkeypatch):
    """LogME, LEEP and NCE put the random copy last. H-score does not at 100 samples of 1280 features:
    the exact score is then K - 1 for any features, and the shrunk one favours the random copy's
    more concentrated spectrum (its Ledoit-Wolf shrinkage is lower), so it is not asserted here."""
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "cache"))
    ranking = transferkit.rank("demo:mnist", "efficientnet_lite0", control=True, train_per_class=10,
                               image_size=32, progress=False)
    rows = {r["model"]: r for r in ranking.rows}
    assert [r["model"] for r in ranking.rows] == ["efficientnet_lite0", "efficientnet_lite0@random"]
    for score in ("logme", "leep", "nce"):
        assert rows["efficientnet_lite0"][score] > rows["efficientnet_lite0@random"][score], score
