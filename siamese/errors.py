"""The one exception type the command-line tools turn into a one-line message."""

from __future__ import annotations

import functools


class SiameseError(Exception):
    """A problem with the user's input or environment, explained in one line (no traceback)."""


def user_errors(fn):
    """Show a SiameseError as one line and a non-zero exit, never a traceback (for click commands)."""
    import click

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SiameseError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            raise click.Abort() from None

    return wrapper
