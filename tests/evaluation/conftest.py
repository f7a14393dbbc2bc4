"""A small real comparison, fitted once per session: tiny-cnn on demo:mnist, 3 strategies x 2 sizes x 2 seeds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from compare_helpers import OPTIONS, SEEDS, SIZES, STRATEGIES, single_thread

import transferkit
from transferkit.training import features


@dataclass
class Fitted:
    comparison: object  # transferkit Comparison
    extractions: list[Path]  # cache files written by every backbone pass of the comparison


@pytest.fixture(scope="session")
def mnist_comparison(tmp_path_factory) -> Fitted:
    out = tmp_path_factory.mktemp("compare") / "cmp-mnist"
    extractions: list[Path] = []
    real = features.extract_features

    def counting(backbone, loader, out_path, *args, **kwargs):
        extractions.append(Path(out_path))
        return real(backbone, loader, out_path, *args, **kwargs)

    with single_thread(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(features, "extract_features", counting)
        result = transferkit.compare(strategies=",".join(STRATEGIES), train_per_class=SIZES,
                                     seeds=len(SEEDS), out=str(out), progress=False, **OPTIONS)
    return Fitted(result, extractions)


@pytest.fixture(autouse=True)
def _single_thread():
    with single_thread():
        yield
