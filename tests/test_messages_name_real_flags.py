"""Every `--flag` a message or help text of transferkit names is a flag its command line has.

Messages tell the user what to pass; a flag that does not exist turns a helpful error into a second one.
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import transferkit
from transferkit.cli import build_parser

PACKAGE = Path(transferkit.__file__).parent
#: Flags of other programs that transferkit's messages quote (mlflow ui/serve, tensorboard).
OTHER_TOOLS = {"--backend-store-uri", "--env-manager", "--logdir"}
#: The standalone ONNX predictor has its own little command line.
STANDALONE = {PACKAGE / "deploy" / "predict_onnx.py"}


def parser_flags(parser: argparse.ArgumentParser) -> set[str]:
    flags = set()
    for action in parser._actions:
        flags.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags |= parser_flags(sub)
    return flags


def named_flags(source: str) -> set[str]:
    """`--flag` tokens in the string literals of `source` (f-string parts included)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.update(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", node.value))
    return found


def test_every_flag_named_in_a_message_exists():
    flags = parser_flags(build_parser())
    missing = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in STANDALONE:
            continue
        for flag in named_flags(path.read_text(encoding="utf-8")) - flags - OTHER_TOOLS:
            missing.setdefault(flag, []).append(str(path.relative_to(PACKAGE)))
    assert not missing, f"messages name flags the CLI does not have: {missing}"


def test_the_check_finds_a_flag_that_does_not_exist():
    assert named_flags('raise ConfigError(f"use --no-such-flag {x} or --lr")') == {"--no-such-flag", "--lr"}
    assert "--no-such-flag" not in parser_flags(build_parser())
