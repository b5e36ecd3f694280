"""Click parameter types of every command and configuration: a bad value fails at parse time.

Non-finite numbers, sizes the network cannot take, lists that parse to nothing, unknown
devices and output files with a suffix no writer knows are all refused before any work.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import click

from siamese.core.spec import MAX_BATCH, image_size_problem

# Every number an option takes is bounded where it is parsed: a value beyond a C int, or one that
# would allocate gigabytes, is a usage error, not a crash minutes later.
MAX_THREADS = 1024
Threads = click.IntRange(1, MAX_THREADS)
Batch = click.IntRange(1, MAX_BATCH)  # images or pairs per runtime call
Seed = click.IntRange(0, 2**32 - 1)  # what torch, numpy and Python's random all take


class FiniteFloat(click.FloatRange):
    """A FloatRange that also refuses nan and inf (which compare as inside any range)."""

    name = "number"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class ImageSize(click.ParamType):
    """A square input size the network can take (siamese.core.spec)."""

    name = "pixels"

    def convert(self, value, param, ctx):
        try:
            size = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not an integer", param, ctx)
        if problem := image_size_problem(size):
            self.fail(problem, param, ctx)
        return size


class Device(click.ParamType):
    """auto, cpu, cuda or cuda:N; whether CUDA is present is checked when training starts."""

    name = "device"

    def convert(self, value, param, ctx):
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(value)):
            self.fail(f"{value!r}: expected auto, cpu, cuda or cuda:N", param, ctx)
        return str(value)


class IntList(click.ParamType):
    name = "N[,N...]"

    def __init__(self, maximum: int = MAX_BATCH):
        self.maximum = maximum

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            values = [int(x) for x in str(value).split(",") if x.strip()]
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of integers", param, ctx)
        if not values or min(values) < 1:
            self.fail(f"{value!r}: give at least one positive integer", param, ctx)
        if max(values) > self.maximum:
            self.fail(f"{value!r}: {max(values)} is above the largest value, {self.maximum}", param, ctx)
        return values


class OutputFile(click.Path):
    """A file to be written, with one of `suffixes`, in a folder that exists or can be made."""

    def __init__(self, *suffixes: str):
        super().__init__(path_type=Path, dir_okay=False)
        self.suffixes = suffixes

    def convert(self, value, param, ctx):
        path = super().convert(value, param, ctx)
        if path.suffix.lower() not in self.suffixes:
            self.fail(f"{str(path)!r}: write it as {' or '.join(self.suffixes)}", param, ctx)
        if path.is_dir():
            self.fail(f"{str(path)!r} is a folder", param, ctx)
        return path


def option(
    default=dataclasses.MISSING, help: str = "", type=None, flag: str | None = None, factory=None, **click_kwargs
):
    """A dataclass field that is also a command-line option (siamese.cli.options.options_from
    makes it one): its default, help and click type live here, once. `flag` names the option
    where it differs from `--field-name` (`--json`, or `--x/--no-x`); `factory` is a
    default_factory; other keywords go to click.option as they are."""
    metadata = {"help": help, "type": type, "flag": flag, "click": click_kwargs}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)
