"""TensorBoard: event files under <run>/logs/tensorboard/attempt*/ (`tensorboard --logdir runs/`)."""

from __future__ import annotations

from pathlib import Path

from transferkit.tracking.base import Tracker, final_metrics


class TensorBoardTracker(Tracker):
    """Lightning's TensorBoardLogger; the run's options as hparams, the final metrics as scalars."""

    name = "tensorboard"
    description = "TensorBoard event files in <run>/logs/tensorboard/ (tensorboard --logdir <runs>)"

    def make_logger(self, config, out: Path, *, version: str, resume: bool):
        from lightning.pytorch.loggers import TensorBoardLogger

        logger = TensorBoardLogger(save_dir=str(Path(out) / "logs"), name="tensorboard", version=version,
                                   default_hp_metric=False)
        logger.log_hyperparams(config.to_dict())
        return logger

    def finish(self, logger, out: Path) -> None:
        final = final_metrics(out)
        logger.log_metrics(final, step=int(final.get("final/epochs_run", 0)))
        logger.finalize("success")
