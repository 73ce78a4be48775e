"""The argument conventions every ``medsam3`` command shares: one-line usage errors, no option abbreviations, and
coordinates written ``X,Y,Z`` (a leading minus included). Used by :mod:`.cli` and :mod:`.demo` alike."""

from __future__ import annotations

import argparse
from typing import Sequence

COORDINATE_OPTIONS = ("--point", "--negative-point", "--box")


class UsageError(Exception):
    """A command line argparse refused."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser that reports a bad argument as an exception (printed as one line by :func:`.cli.main`).

    Options are never matched by prefix (``--out`` is not ``--output``), in every command and sub-command."""

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _numbers(text: str, count: int, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != count or not all(abs(v) < float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"{what} must be {count} comma-separated numbers, got {text!r}")
    return values


def parse_point(text: str) -> tuple[float, float, float]:
    return _numbers(text, 3, "a point (X,Y,Z)")


def _box(text: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    values = _numbers(text, 6, "a box (X0,Y0,Z0,X1,Y1,Z1)")
    return values[:3], values[3:]


def attach_coordinate_values(argv: Sequence[str]) -> list[str]:
    """Let ``--point -12.5,30,4`` through: argparse would take the leading minus for an option."""
    joined: list[str] = []
    arguments = list(argv)
    index = 0
    while index < len(arguments):
        argument = arguments[index]
        if argument in COORDINATE_OPTIONS and index + 1 < len(arguments) and arguments[index + 1].startswith("-") \
                and "," in arguments[index + 1]:
            joined.append(f"{argument}={arguments[index + 1]}")
            index += 2
            continue
        joined.append(argument)
        index += 1
    return joined
