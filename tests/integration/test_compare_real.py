"""compare with real ImageNet weights on real digits: transfer must show up as a benefit over scratch."""

from __future__ import annotations

import pytest

import transferkit

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _single_blas_thread():
    """On a busy CPU, OpenBLAS's spinning threads made the logistic head's small dot products ~1000x slower."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def test_efficientnet_comparison_on_mnist_finds_transfer_helps(tmp_path):
    result = transferkit.compare(data="demo:mnist", model="efficientnet_lite0", strategies="feature-extraction,scratch",
                                 train_per_class=10, seeds=2, image_size=32, epochs=2, val_fraction=0.05,
                                 test_fraction=0.05, out=str(tmp_path / "cmp"), progress=False)
    table = result.table.set_index("cell")
    for seed in (0, 1):
        fe, scratch = table.loc[f"feature-extraction-n10-seed{seed}"], table.loc[f"scratch-n10-seed{seed}"]
        assert fe["test/accuracy"] > scratch["test/accuracy"] + 0.2  # 100 labels: ImageNet features win clearly
        assert fe["trainable_params"] == 1280 * 10 + 10
    md = result.report_md.read_text()
    assert "| 10 labels per class | feature-extraction |" in md
    verdicts = [line for line in md.splitlines() if line.startswith("| 10 ") and "scratch" not in line.split("|")[2]]
    assert not any("negative transfer" in line for line in verdicts)  # the method paragraph names the word
    assert any(line.rstrip(" |").endswith("helps") for line in verdicts), verdicts
    assert len(list((tmp_path / "cmp" / "feature-cache").glob("*.npy"))) == 4  # train + val per seed
