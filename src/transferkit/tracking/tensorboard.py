"""TensorBoard: event files under <run>/logs/tensorboard/attempt*/ (`tensorboard --logdir runs/`)."""

from __future__ import annotations

from pathlib import Path

from transferkit.files import read_saved_yaml
from transferkit.tracking.base import Tracker, final_metrics


class TensorBoardTracker(Tracker):
    """Lightning's TensorBoardLogger; per-epoch metrics as scalars, the run's options as hparams.

    When the run ends, its resolved options and its final metrics go to TensorBoard's HParams tab
    (one session per finished run, so runs under one --logdir compare there side by side).
    """

    name = "tensorboard"
    description = "TensorBoard event files in <run>/logs/tensorboard/ (tensorboard --logdir <runs>)"

    def make_logger(self, config, out: Path, *, version: str, resume: bool):
        from lightning.pytorch.loggers import TensorBoardLogger

        logger = TensorBoardLogger(save_dir=str(Path(out) / "logs"), name="tensorboard", version=version,
                                   default_hp_metric=False)
        logger.log_hyperparams(config.to_dict())
        return logger

    def finish(self, logger, out: Path) -> None:
        # Lightning writes the hparams plugin data only when given metrics: the final ones, logged as
        # scalars by the same call (at step 0), are the HParams tab's metric columns.
        options = read_saved_yaml(Path(out) / "config.yaml")  # as saved: resolved, with the strategy's defaults
        logger.log_hyperparams(hparam_values(options), metrics=final_metrics(out))
        logger.finalize("success")


def hparam_values(options: dict) -> dict[str, str | int | float | bool]:
    """Options as TensorBoard hparams: nested ones as `strategy_options/alpha`, lists as text, None as 'none'."""
    flat: dict[str, str | int | float | bool] = {}
    for key, value in options.items():
        if isinstance(value, dict):
            flat.update({f"{key}/{k}": v for k, v in hparam_values(value).items()})
        elif isinstance(value, str | int | float | bool):
            flat[key] = value
        else:
            flat[key] = "none" if value is None else str(value)
    return flat
