"""click types of siamese-bench's options (BenchConfig's fields say which option takes which)."""

from __future__ import annotations

import click

from siamese.backends import RUNTIMES

TOLERANCE_KEYS = ("atol", "rtol", "accuracy_delta")


class NameList(click.ParamType):
    """Comma-separated runtime names of the registry; "all" is None (every runtime)."""

    name = "NAME[,NAME...]"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, list):
            return value
        if value == "all":
            return None
        names = [n.strip() for n in str(value).split(",") if n.strip()]
        unknown = [n for n in names if n not in RUNTIMES]
        if not names or unknown:
            self.fail(
                f"unknown runtime(s) {', '.join(unknown) or repr(value)}; known: {', '.join(RUNTIMES)}", param, ctx
            )
        return names


def tolerances(ctx, param, items) -> dict[str, float]:
    """Repeated KEY=VALUE overrides of a precision's tolerance, as one dict."""
    out = {}
    for item in items or ():
        key, _, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if key not in TOLERANCE_KEYS or not 0 <= number < float("inf"):
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE with KEY one of {', '.join(TOLERANCE_KEYS)}")
        out[key] = number
    return out
