"""ModelMeta, the only reader and writer of model/transferkit.json: typed, versioned, refused in one line when damaged."""

from __future__ import annotations

import json

import pytest

import transferkit
from transferkit.errors import RunFolderError
from transferkit.modelmeta import FORMAT_VERSION, ModelMeta


def test_written_metadata_reads_back_typed_and_saves_identically(fe_image_run, tmp_path):
    meta = ModelMeta.from_file(fe_image_run)
    assert meta.format_version == FORMAT_VERSION and meta.task == "classification"
    assert meta.classes == ["blue", "green", "red"] and meta.outputs == 3
    assert meta.data_spec == transferkit.load_run(fe_image_run).model.backbone.data_spec
    (tmp_path / "model").mkdir()
    meta.save(tmp_path / "model")
    written = json.loads((tmp_path / "model" / "transferkit.json").read_text())
    assert written == json.loads((fe_image_run / "model" / "transferkit.json").read_text())
    assert ModelMeta.from_file(tmp_path) == meta


def _edit(run, change) -> None:
    path = run / "model" / "transferkit.json"
    values = json.loads(path.read_text())
    change(values)
    path.write_text(json.dumps(values))


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m.update(format_version=FORMAT_VERSION + 1),
     rf"has format_version {FORMAT_VERSION + 1}, newer than this transferkit reads \({FORMAT_VERSION}\); upgrade"),
    (lambda m: m.update(format_version=0), r"has no valid format_version \(0\)"),
    (lambda m: m.pop("format_version"), r"has no valid format_version \(None\)"),
    (lambda m: m.pop("classes"), r"is damaged: key 'classes' is missing; re-run fit"),
    (lambda m: m.update(num_features="many"), r"is damaged: 'num_features' is 'many', not an integer"),
    (lambda m: m.update(head=None), r"is damaged: 'head' is None, not a string"),
    (lambda m: m.update(target_stats=[0.0]), r"is damaged: 'target_stats' is \[0.0\], not \[mean, std\]"),
    (lambda m: m.update(data_spec={"colour": 1}), r"is damaged: 'data_spec' \("),
    (lambda m: m.update(native="backbone.safetensors"), r"is damaged: 'native' is 'backbone.safetensors', not a mapping"),
])
def test_a_damaged_or_newer_transferkit_json_is_refused_in_one_line(cli_error, copy_run, fe_image_run,
                                                                    color_images, change, message):
    run = copy_run(fe_image_run)
    _edit(run, change)
    with pytest.raises(RunFolderError, match=message):
        transferkit.load_run(run).model
    line = cli_error("predict", run, color_images / "red" / "0.png")
    assert "transferkit.json" in line and "Traceback" not in line


def test_a_folder_written_before_native_weights_still_reads(copy_run, fe_image_run, color_images):
    """`native` is optional in format 1: a folder without it loads and predicts as before."""
    run = copy_run(fe_image_run)
    _edit(run, lambda m: m.pop("native"))
    assert ModelMeta.from_file(run).native is None
    assert ModelMeta.from_file(fe_image_run).native["backbone"]["file"] == "backbone.safetensors"
    path = str(color_images / "red" / "0.png")
    assert transferkit.load_run(run).predict([path]) == transferkit.load_run(fe_image_run).predict([path])
