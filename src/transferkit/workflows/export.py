"""Exporting a run's model (`transferkit.export`): a self-contained ONNX file, checked against PyTorch.

Images: the exported graph takes pixels in NCHW at the run's image size, either float 0..1 or uint8
0..255, and normalises them itself (mean/std baked in). Text: it takes `input_ids` and
`attention_mask`; the run's tokenizer is saved next to the .onnx file. Classification graphs output
`logits`; regression graphs output `values` in the target's units.

The export folder describes itself: transferkit_export.json records every preprocessing step
(resize, crop, scaling, layout; tokenizer, truncation, padding), model.onnx carries the task, class
names and those steps in its metadata_props, and predict_onnx.py applies them with ONNX Runtime,
numpy and Pillow alone.

The export is staged in a temporary folder beside RUN/export and swapped in when complete, so an
interrupted or failed export leaves RUN/export as it was; the staging folder of a killed export is
removed (or, if it was caught mid-swap, the previous export restored) by the next export.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from transferkit.backbones.base import DataSpec
from transferkit.data.transforms import build_image_transform, image_size_for
from transferkit.deploy import PREDICT_SCRIPT
from transferkit.deploy.preprocessing import image_preprocessing, text_preprocessing
from transferkit.errors import ConfigError, ExportError, writing
from transferkit.files import is_stale, remove_stale_temporaries, temporary_name
from transferkit.runs import Run

FORMATS = ("onnx",)
INPUT_DTYPES = ("float32", "uint8")
DEFAULT_TOLERANCE = 1e-4
OPSET = 17
#: What a full or read-only run folder's message suggests.
EXPORT_FIX = "copy the run folder to a disk with room and export the copy"
SAMPLE_TEXTS = ["a short one", "a longer sentence, with punctuation and several more words in it",
                "okay", "transferkit exports the tokenizer next to the model file"]


@dataclass(frozen=True)
class ExportResult:
    """What `export` wrote and how closely ONNX Runtime reproduced PyTorch.

    Attributes:
        folder: the export folder (RUN/export).
        model_path: the .onnx file.
        max_abs_diff: largest absolute difference of the outputs on the sample inputs.
        tolerance: the largest difference that was accepted.
        inputs: names of the graph's inputs.
        outputs: names of the graph's outputs.
    """

    folder: Path
    model_path: Path
    max_abs_diff: float
    tolerance: float
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


class ImageExport(nn.Module):
    """Pixels (N, C, H, W), float 0..1 or uint8 -> normalised -> model -> outputs."""

    def __init__(self, model: nn.Module, mean, std, *, scale: float, target_stats=None):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.scale = scale
        self.target_stats = target_stats

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels.float() / self.scale - self.mean) / self.std
        return _rescale(self.model(x), self.target_stats)


class TextExport(nn.Module):
    """(input_ids, attention_mask) -> model -> outputs."""

    def __init__(self, model: nn.Module, target_stats=None):
        super().__init__()
        self.model = model
        self.target_stats = target_stats

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = self.model({"input_ids": input_ids, "attention_mask": attention_mask})
        return _rescale(logits, self.target_stats)


def _rescale(logits: torch.Tensor, target_stats):
    if target_stats is None:
        return logits
    return logits.squeeze(-1) * target_stats[1] + target_stats[0]


def export(run, *, format: str = "onnx", tolerance: float = DEFAULT_TOLERANCE, input_dtype: str = "float32",
           opset: int = OPSET) -> ExportResult:
    """Export a run's model to RUN/export/, refusing it when ONNX Runtime disagrees with PyTorch.

    Args:
        run: a run folder (or a loaded `Run`).
        format: "onnx".
        tolerance: the largest absolute output difference accepted on the sample inputs.
        input_dtype: images only: "float32" (pixels 0..1) or "uint8" (pixels 0..255).
        opset: the ONNX opset to target.

    Returns:
        An ExportResult with the paths and the measured difference.

    Raises:
        ConfigError: unknown format or input dtype, or a negative tolerance.
        ExportError: the exported graph's outputs differ from PyTorch's by more than `tolerance`.
    """
    _check_options(format, tolerance, input_dtype)
    run = run if isinstance(run, Run) else Run.load(run)
    model, facts = run.model.float().eval(), run_facts(run)
    if facts.modality == "text":
        wrapper, samples, names, preprocessing = _text_wrapper(model, facts)
    else:
        wrapper, samples, names, preprocessing = _image_wrapper(model, facts, input_dtype)
    outputs = ("logits",) if facts.target_stats is None else ("values",)
    final = Path(run.folder) / "export"
    with writing(final, EXPORT_FIX):  # a full or read-only run folder: one line naming RUN/export
        staging = _staging_folder(final)
        try:
            _torch_export(wrapper, samples[0], staging / "model.onnx", names, outputs, opset)
            _add_onnx_metadata(staging / "model.onnx", facts, preprocessing)
            diff = max_abs_diff(wrapper, staging / "model.onnx", samples, names)
            if not diff <= tolerance:
                raise ExportError(f"The ONNX model's outputs differ from PyTorch's by up to {diff:.3g}, more than "
                                  f"the tolerance {tolerance:g}; nothing was written to {final}. Try another "
                                  "--opset, or raise --tolerance if the difference is acceptable.")
            if facts.modality == "text":
                model.backbone.tokenizer.save_pretrained(str(staging / "tokenizer"))
            _write_meta(staging, facts, preprocessing, names, outputs, input_dtype, diff, tolerance, opset)
            shutil.copyfile(PREDICT_SCRIPT, staging / PREDICT_SCRIPT.name)
            _replace_folder(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(final, final / "model.onnx", diff, tolerance, names, outputs)


@dataclass(frozen=True)
class RunFacts:
    """What export needs to know about a run's model, read from its saved metadata in one place."""

    backbone: str
    task: str
    modality: str
    classes: list[str] | None
    target_stats: tuple[float, float] | None
    data_spec: DataSpec
    image_size: int | None
    max_length: int | None


def run_facts(run) -> RunFacts:
    """What export needs of the run's ModelMeta (model/transferkit.json), gathered in one place."""
    meta = run.meta
    regression = meta.task != "classification"
    return RunFacts(backbone=meta.backbone, task=meta.task, modality=meta.modality,
                    classes=None if regression else meta.classes,
                    target_stats=meta.scaling.as_tuple() if regression else None,
                    data_spec=meta.data_spec, image_size=meta.image_size,
                    # predict truncates to the run's --max-length, else the backbone's default
                    max_length=meta.max_length or meta.data_spec.max_length)


def _check_options(format: str, tolerance: float, input_dtype: str) -> None:
    if format not in FORMATS:
        raise ConfigError(f"Unknown export format {format!r}. Choose one of: {', '.join(FORMATS)}.")
    if input_dtype not in INPUT_DTYPES:
        raise ConfigError(f"Unknown input dtype {input_dtype!r}. Choose one of: {', '.join(INPUT_DTYPES)}.")
    if not tolerance >= 0:
        raise ConfigError(f"--tolerance must be zero or positive, got {tolerance!r}.")


def _image_wrapper(model, facts: RunFacts, input_dtype: str):
    transform = build_image_transform(facts.data_spec, image_size=facts.image_size)
    preprocessing = image_preprocessing(transform, input_dtype=input_dtype)
    height, width = image_size_for(facts.data_spec, facts.image_size)
    spec = facts.data_spec
    scale = 255.0 if input_dtype == "uint8" else 1.0
    wrapper = ImageExport(model, spec.mean, spec.std, scale=scale, target_stats=facts.target_stats).eval()
    generator = torch.Generator().manual_seed(0)
    samples = []
    for batch in (2, 5):  # two batch sizes: the batch axis must stay dynamic
        pixels = torch.randint(0, 256, (batch, spec.in_chans, height, width), generator=generator, dtype=torch.uint8)
        samples.append((pixels if input_dtype == "uint8" else pixels.float() / 255.0,))
    return wrapper, samples, ("pixels",), preprocessing


def _text_wrapper(model, facts: RunFacts):
    tokenizer = model.backbone.tokenizer
    names = ("input_ids", "attention_mask")
    preprocessing = text_preprocessing(tokenizer, max_length=facts.max_length, inputs=names)
    samples = []
    for texts in (SAMPLE_TEXTS[:2], SAMPLE_TEXTS):  # different batch sizes and lengths: dynamic axes
        encoded = tokenizer(texts, padding=True, truncation=True, max_length=facts.max_length, return_tensors="pt")
        samples.append((encoded["input_ids"], encoded["attention_mask"]))
    return TextExport(model, facts.target_stats).eval(), samples, names, preprocessing


def _torch_export(wrapper, sample, path: Path, inputs, outputs, opset: int) -> None:
    dynamic = {name: ({0: "batch", 1: "sequence"} if name != "pixels" else {0: "batch"}) for name in inputs}
    dynamic.update({name: {0: "batch"} for name in outputs})
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(wrapper, sample, str(path), dynamo=False, input_names=list(inputs),
                          output_names=list(outputs), dynamic_axes=dynamic, opset_version=opset)


def onnx_outputs(path: Path, sample, names) -> np.ndarray:
    """Run the ONNX file at `path` on one sample (a tuple of tensors) with ONNX Runtime on the CPU."""
    import onnxruntime as ort  # deferred: only export and its check need ONNX Runtime

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {n: t.numpy() for n, t in zip(names, sample)})[0]


@torch.inference_mode()
def max_abs_diff(wrapper, path: Path, samples, names) -> float:
    """The largest absolute difference between PyTorch's and ONNX Runtime's outputs over `samples`."""
    worst = 0.0
    for sample in samples:
        expected = wrapper(*sample).numpy()
        got = onnx_outputs(path, sample, names)
        if got.shape != expected.shape:
            return float("inf")
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def _add_onnx_metadata(path: Path, facts: RunFacts, preprocessing: dict) -> None:
    """Class names, task and preprocessing in the graph's metadata_props, so the .onnx file describes itself."""
    import onnx  # deferred: only export needs onnx

    graph = onnx.load(str(path))
    props = {"transferkit.task": facts.task, "transferkit.modality": facts.modality,
             "transferkit.classes": json.dumps(facts.classes), "transferkit.backbone": facts.backbone,
             "transferkit.preprocessing": json.dumps(preprocessing)}
    if facts.target_stats is not None:
        props["transferkit.output"] = "values in the target's units"
    onnx.helper.set_model_props(graph, props)
    onnx.save(graph, str(path))


def _write_meta(folder: Path, facts: RunFacts, preprocessing: dict, inputs, outputs, input_dtype: str,
                diff: float, tolerance: float, opset: int) -> None:
    info = {"format": "onnx", "opset": opset, "inputs": list(inputs), "outputs": list(outputs),
            "task": facts.task, "classes": facts.classes, "modality": facts.modality,
            "output": ("logits: softmax gives the class probabilities, in the order of classes"
                       if facts.target_stats is None else "values: predictions in the target's units"),
            "max_abs_diff": diff, "tolerance": tolerance, "backbone": facts.backbone,
            "preprocessing": preprocessing, "predictor": PREDICT_SCRIPT.name}
    if facts.modality == "image":
        spec = facts.data_spec
        info.update(input_dtype=input_dtype, image_size=facts.image_size or list(spec.input_size),
                    layout="NCHW", pixel_range="0..255" if input_dtype == "uint8" else "0..1",
                    normalisation_included=True, mean=list(spec.mean), std=list(spec.std))
    else:
        info.update(tokenizer="tokenizer", max_length=facts.max_length)
    (folder / "transferkit_export.json").write_text(json.dumps(info, indent=2), encoding="utf-8")


def _staging_folder(final: Path) -> Path:
    """A new, empty folder beside `final` (with the user's umask, unlike mkdtemp's 0700) to build the export in.

    First cleans up after exports killed earlier: a previous export caught between the two renames of
    `_replace_folder` is put back; any other staging folder of a dead process is removed.
    """
    if not final.exists():
        for old in sorted(final.parent.glob(f".{final.name}.*.tmp.old")):
            if is_stale(old):
                os.replace(old, final)
                break
    remove_stale_temporaries(final.parent, f".{final.name}.*")
    while True:
        staging = temporary_name(final)
        try:
            staging.mkdir()
            return staging
        except FileExistsError:
            continue


def _replace_folder(staging: Path, final: Path) -> None:
    """Swap `staging` in as `final`; a reader sees the old export or the new one, never a mix."""
    old = None
    if final.exists():
        old = staging.with_name(staging.name + ".old")
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
