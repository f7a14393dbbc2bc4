"""The quickstart: does a pretrained EfficientNet-Lite0 beat training from scratch on MNIST?"""

from __future__ import annotations

from pathlib import Path

from transferkit.errors import RunFolderError
from transferkit.options import build_config
from transferkit.runs import Run
from transferkit.training import fit as engine

QUICKSTART_STRATEGIES = ("feature-extraction", "full", "scratch")


def quickstart(out: str | Path = "runs/quickstart", *, train_per_class: int = 50, image_size: int = 64,
               model: str = "efficientnet_lite0", data: str = "demo:mnist", seed: int = 0) -> list[dict]:
    """Fit feature extraction, full fine-tuning and scratch on the same split; print a table.

    Finished runs in `out` are reused, so an interrupted quickstart picks up where it stopped.
    """
    from rich.console import Console  # deferred: only printing needs rich
    from rich.table import Table

    rows = []
    for strategy in QUICKSTART_STRATEGIES:
        folder = Path(out) / strategy
        try:
            run = Run.load(folder)
        except RunFolderError:
            resume = (folder / "config.yaml").is_file()
            config = build_config(data=data, model=model, strategy=strategy, train_per_class=train_per_class,
                                  image_size=image_size, seed=seed, out=str(folder))
            run = engine.fit(config, resume=resume, progress=True)
        m = run.metrics
        rows.append({"strategy": strategy, "test_accuracy": m["test"]["accuracy"],
                     "macro_f1": m["test"]["macro_f1"], "train_seconds": m["train_seconds"],
                     "trainable_params": m["trainable_params"], "epochs": m["epochs_run"]})
    table = Table(title=f"{model} on {data}: {train_per_class} labels/class, {image_size}px, "
                        f"{m['n_test']} test images")
    for col in ("strategy", "test accuracy", "macro F1", "train time", "trainable params", "epochs"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for r in rows:
        table.add_row(r["strategy"], f"{r['test_accuracy']:.3f}", f"{r['macro_f1']:.3f}",
                      f"{r['train_seconds']:.1f} s", f"{r['trainable_params']:,}", str(r["epochs"]))
    Console().print(table)
    return rows
