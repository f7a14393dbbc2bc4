"""A report as a list of blocks, rendered to Markdown (figures as files) and to one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from transferkit.files import atomic_write_text


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Alert:
    """A warning a reader must not miss (e.g. negative transfer)."""

    text: str


@dataclass
class Table:
    """A table of strings; rows in `marked` are highlighted (the best strategy), rows in `tied` shaded apart
    (strategies tied for best)."""

    headers: list[str]
    rows: list[list[str]]
    marked: set[int] = field(default_factory=set)
    caption: str = ""
    tied: set[int] = field(default_factory=set)


@dataclass
class Image:
    """A PNG figure: a file next to report.md, embedded as base64 in report.html."""

    name: str
    png: bytes
    caption: str


Block = Heading | Paragraph | Alert | Table | Image
_NUMERIC = re.compile(r"^([-+]?[\d,.]+|\[[-+\d., ]+\]|n/a.*)$")


def to_markdown(blocks: list[Block], figure_dir: str = "figures") -> str:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += [f"{'#' * block.level} {block.text}", ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Alert):
            lines += [f"> **Warning:** {block.text}", ""]
        elif isinstance(block, Table):
            if block.caption:
                lines += [f"*{block.caption}*", ""]
            lines.append("| " + " | ".join(block.headers) + " |")
            lines.append("|" + "|".join("---" for _ in block.headers) + "|")
            for i, row in enumerate(block.rows):
                cells = [f"**{c}**" if i in block.marked and c else c for c in row]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        elif isinstance(block, Image):
            lines += [f"![{block.caption}]({figure_dir}/{block.name}.png)", "", f"*{block.caption}*", ""]
    return "\n".join(lines)


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1100px;
       padding: 0 1rem; color: #1f2328; line-height: 1.45; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .3rem; }
h2 { margin-top: 2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .6rem 0 1.2rem; font-size: .92rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .7rem; text-align: right; }
td { white-space: nowrap; }
th { background: #f6f8fa; } td.text, th.text { text-align: left; }
tr.best td { background: #dafbe1; font-weight: 600; }
tr.tied td { background: #fff8c5; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: .3rem; }
.alert { background: #fff1f0; border: 1px solid #cf222e; border-left: 6px solid #cf222e; padding: .6rem .9rem;
         margin: .6rem 0; border-radius: 4px; }
figure { margin: 1rem 0 1.6rem; } figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { color: #57606a; font-size: .9rem; }
"""


def _html_block(block: Block) -> str:
    esc = html.escape
    if isinstance(block, Heading):
        return f"<h{block.level}>{esc(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        return f"<p>{esc(block.text)}</p>"
    if isinstance(block, Alert):
        return f'<div class="alert" role="alert"><strong>Warning:</strong> {esc(block.text)}</div>'
    if isinstance(block, Table):
        caption = f"<caption>{esc(block.caption)}</caption>" if block.caption else ""
        text = [not any(_NUMERIC.match(row[j]) for row in block.rows) for j in range(len(block.headers))]
        head = "".join(f"<th{_align(t)}>{esc(h)}</th>" for h, t in zip(block.headers, text))
        rows = "".join(
            f"<tr{_row_class(block, i)}>"
            + "".join(f"<td{_align(t)}>{esc(c)}</td>" for c, t in zip(row, text)) + "</tr>"
            for i, row in enumerate(block.rows))
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    data = base64.b64encode(block.png).decode("ascii")
    return (f'<figure id="{esc(block.name)}"><img alt="{esc(block.caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(block.caption)}</figcaption></figure>")


def _row_class(table: Table, index: int) -> str:
    if index in table.marked:
        return ' class="best"'
    return ' class="tied"' if index in table.tied else ""


def _align(text: bool) -> str:
    return ' class="text"' if text else ""


def to_html(blocks: list[Block], title: str) -> str:
    body = "\n".join(_html_block(b) for b in blocks)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")


def write(blocks: list[Block], folder: Path, title: str) -> tuple[Path, Path]:
    """Write report.md (+ figures/*.png) and the self-contained report.html into `folder`."""
    figures = folder / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    for block in blocks:
        if isinstance(block, Image):
            (figures / f"{block.name}.png").write_bytes(block.png)
    md, page = folder / "report.md", folder / "report.html"
    atomic_write_text(md, to_markdown(blocks))
    atomic_write_text(page, to_html(blocks, title))
    return md, page
