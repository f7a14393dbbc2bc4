"""Errors a user can act on. The CLI prints them in one line and exits with code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TransferkitError(Exception):
    """Base class for every error caused by user input or environment, not by a bug."""

    exit_code = 2


class ConfigError(TransferkitError):
    """An option or combination of options that cannot work."""


class DataError(TransferkitError):
    """Missing, empty, corrupt or malformed data."""


class UnknownNameError(TransferkitError):
    """A name looked up in a registry that holds no such entry."""


class WeightsNotFoundError(TransferkitError):
    """Pretrained weights that were asked for but cannot be found."""


class RunFolderError(TransferkitError):
    """A folder that is not (or not a finished) transferkit run."""


class ExportError(TransferkitError):
    """An exported model that does not reproduce the PyTorch model within the tolerance."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean X?' for the closest matches of `name`, or ''."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"
