"""report.html as a person sees it: rendered by headless Chromium, screenshotted, its images and tables loaded,
and every interval printed in the rendered page inside the metric's range."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

import transferkit

#: Probe added to a copy of the report: after the load event it records what the browser actually rendered.
PROBE = """<script>window.addEventListener("load", () => {
  const images = [...document.images];
  document.body.setAttribute("data-rendered", JSON.stringify({
    images: images.length, decoded: images.filter(i => i.complete && i.naturalWidth > 0).length,
    tables: document.querySelectorAll("table").length, alerts: document.querySelectorAll(".alert").length,
    widths: images.map(i => i.naturalWidth)}));
});</script>"""
MATPLOTLIB_BLUE = (31, 119, 180)  # the first line colour of every plot
BEST_ROW_GREEN = (218, 251, 225)  # the highlighted best strategy (#dafbe1)
TIED_ROW_YELLOW = (255, 248, 197)  # strategies tied for best (#fff8c5)


def find_chromium() -> str | None:
    candidates = [os.environ.get("TRANSFERKIT_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium",
                  shutil.which("chromium-browser"), shutil.which("google-chrome")]
    return next((c for c in candidates if c and Path(c).is_file() and os.access(c, os.X_OK)), None)


def chromium(exe: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def browser() -> str:
    exe = find_chromium()
    if exe is None:
        pytest.skip("Chromium not found (looked for $TRANSFERKIT_CHROMIUM, chromium, /usr/bin/chromium, "
                    "chromium-browser, google-chrome); `make test` installs Debian's chromium when run as root.")
    return exe


def color_share(image: Image.Image, color: tuple[int, int, int], tolerance: int = 12) -> float:
    pixels = list(image.convert("RGB").getdata())
    near = sum(all(abs(a - b) <= tolerance for a, b in zip(p, color)) for p in pixels)
    return near / len(pixels)


def test_report_renders_with_its_images_and_tables(browser, mnist_comparison, tmp_path):
    report = mnist_comparison.comparison.folder / "report.html"
    screenshot = tmp_path / "report.png"
    done = chromium(browser, tmp_path, f"--screenshot={screenshot}", "--window-size=1200,2000", report.as_uri())
    assert screenshot.is_file(), done.stderr[-2000:]
    image = Image.open(screenshot)
    assert image.size == (1200, 2000)
    assert len(set(image.convert("RGB").getdata())) > 500, "the page looks blank"
    leaders = color_share(image, BEST_ROW_GREEN) + color_share(image, TIED_ROW_YELLOW)
    assert leaders > 0.001, "no highlighted best or tied row visible"
    assert color_share(image, MATPLOTLIB_BLUE, tolerance=20) > 0.0005, "no plot visible in the first screen"

    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    dom = chromium(browser, tmp_path, "--dump-dom", probed.as_uri()).stdout
    rendered = json.loads(re.search(r'data-rendered="([^"]*)"', dom).group(1).replace("&quot;", '"'))
    assert rendered["images"] == rendered["decoded"] == 3, rendered
    assert min(rendered["widths"]) > 400, rendered
    assert rendered["tables"] == 3, rendered  # two data sizes + the transfer benefit


class RenderedText(HTMLParser):
    """The text a reader sees: each table as rows of cell texts, and every paragraph, caption and alert."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.texts: list[str] = []
        self._cell: list[str] | None = None
        self._text: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag in ("p", "figcaption", "caption", "div"):
            self._text = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag in ("p", "figcaption", "caption", "div") and self._text is not None:
            self.texts.append("".join(self._text))
            self._text = None

    def handle_data(self, data):
        for sink in (self._cell, self._text):
            if sink is not None:
                sink.append(data)


INTERVAL = re.compile(r"([-+]?\d+\.\d+)?\s*\[(-?\d+\.\d+), (-?\d+\.\d+)\]")


def make_extreme(folder: Path, strategy: str, size: str) -> None:
    """Seed 0 of `strategy` gets every test item right, seed 1 every one wrong (metrics.json to match)."""
    for seed, right in ((0, True), (1, False)):
        cell = folder / "cells" / f"{strategy}-n{size}-seed{seed}"
        preds = pd.read_csv(cell / "predictions_test.csv", dtype={"target": str, "prediction": str})
        classes = sorted(set(preds["target"]))
        wrong = preds["target"].map(lambda t: classes[(classes.index(t) + 1) % len(classes)])
        preds["prediction"] = preds["target"] if right else wrong
        preds.to_csv(cell / "predictions_test.csv", index=False)
        metrics = json.loads((cell / "metrics.json").read_text())
        metrics["test"]["accuracy"] = 1.0 if right else 0.0
        (cell / "metrics.json").write_text(json.dumps(metrics))


@pytest.mark.parametrize("extreme", [False, True], ids=["as-fitted", "extreme-seeds"])
def test_every_interval_in_the_rendered_report_stays_in_range(browser, mnist_comparison, tmp_path, extreme):
    folder = shutil.copytree(mnist_comparison.comparison.folder, tmp_path / "cmp")
    if extreme:  # a strategy at 100% with one seed and 0% with the other: a t-interval spans [-5.9, 6.9]
        make_extreme(folder, "full", "5")
    transferkit.report(folder)
    dom = chromium(browser, tmp_path, "--dump-dom", (folder / "report.html").as_uri()).stdout
    page = RenderedText()
    page.feed(dom)
    checked = 0
    for table in page.tables:
        header, *rows = table
        for row in rows:
            for name, cell in zip(header, row):
                for estimate, low, high in INTERVAL.findall(cell):
                    # A signed estimate (in its own cell or before the interval) is a difference of accuracies.
                    signed = name.startswith(("gain", "vs top")) or estimate[:1] in "+-" or "gain" in header
                    assert_in_range(float(low), float(high), signed, f"{name}: {cell}")
                    checked += 1
    for text in page.texts:
        for estimate, low, high in INTERVAL.findall(text):
            assert estimate, f"an interval without its estimate: {text}"
            assert_in_range(float(low), float(high), estimate[0] in "+-", text)
            checked += 1
    # 3 strategies x 2 sizes, 2 x 2 differences from the top, 2 x 2 gains over scratch, the summary lines.
    assert checked >= 6 + 4 + 4 + 2
    if extreme:  # seeds drawn (1, 1) or (0, 0) reach the ends of the range, never beyond
        [row] = [r for t in page.tables for r in t if r[0].endswith("full") and r[2] == "0.500"]
        assert row[3] == "[0.000, 1.000]", row


def assert_in_range(low: float, high: float, difference: bool, where: str) -> None:
    bottom = -1.0 if difference else 0.0
    assert bottom <= low <= high <= 1.0, f"interval [{low}, {high}] out of range in {where!r}"
