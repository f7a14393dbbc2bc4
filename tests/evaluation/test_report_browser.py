"""report.html as a person sees it: rendered by headless Chromium, screenshotted, its images and tables loaded."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

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
    assert color_share(image, BEST_ROW_GREEN) > 0.001, "no highlighted best row visible"
    assert color_share(image, MATPLOTLIB_BLUE, tolerance=20) > 0.0005, "no plot visible in the first screen"

    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    dom = chromium(browser, tmp_path, "--dump-dom", probed.as_uri()).stdout
    rendered = json.loads(re.search(r'data-rendered="([^"]*)"', dom).group(1).replace("&quot;", '"'))
    assert rendered["images"] == rendered["decoded"] == 3, rendered
    assert min(rendered["widths"]) > 400, rendered
    assert rendered["tables"] == 3, rendered  # two data sizes + the transfer benefit
