"""One overall progress bar across the runs of a workflow: tqdm on stderr, with an ETA.

Runs found finished count as done from the start (`initial`), so the ETA is the rate of the runs
that train now, not inflated by the ones skipped in an instant. Lines about each run are written
through the bar (`OverallBar.line`), so the bar never tears them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm


def on_terminal(enabled: bool = True) -> bool:
    """Whether to draw a bar: asked for, and stderr is a terminal (in a pipe or a log a bar is only noise
    around the lines that matter, and an error must stay one line)."""
    return enabled and sys.stderr.isatty()


class OverallBar:
    """A tqdm bar over runs (disabled: lines are still printed, no bar is drawn)."""

    def __init__(self, bar: tqdm, enabled: bool):
        self._bar = bar
        self._enabled = enabled

    def done(self, skipped: bool = False) -> None:
        """One more run finished (`skipped`: it was finished before and already counted)."""
        if not skipped:
            self._bar.update(1)

    def line(self, text: str, file=None) -> None:
        """A line above the bar, on `file` (default stdout)."""
        if self._enabled:
            file = file or sys.stdout
            self._bar.write(text, file=file)
            file.flush()

    def note(self, text: str) -> None:
        """A short status at the bar's end (e.g. the best score so far)."""
        self._bar.set_postfix_str(text, refresh=False)


@contextmanager
def overall_bar(total: int, *, finished: int = 0, desc: str, unit: str, enabled: bool = True) -> Iterator[OverallBar]:
    """A bar of `total` runs, `finished` of them done before it starts."""
    with tqdm(total=total, initial=finished, desc=desc, unit=unit, file=sys.stderr, disable=not on_terminal(enabled),
              dynamic_ncols=True) as bar, logging_redirect_tqdm(tqdm_class=tqdm):
        yield OverallBar(bar, enabled)
