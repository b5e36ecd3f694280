"""The exception and warning types the command-line tools turn into one-line messages, and
the quieting of libraries' own chatter."""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import warnings


class SiameseError(Exception):
    """A problem with the user's input or environment, explained in one line (no traceback)."""


def first_line(exc: BaseException, with_type: bool = False) -> str:
    """The first line of an exception's message (libraries raise pages), optionally after its type."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {line}" if with_type else line


class SiameseWarning(UserWarning):
    """Input that is usable but probably not what the user meant (duplicate pairs, say)."""


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, SiameseWarning):
        print(f"warning: {message}", file=file or sys.stderr)
    else:
        _default_show_warning(message, category, filename, lineno, file, line)


_default_show_warning = warnings.showwarning


def user_errors(fn):
    """Show a SiameseError as one line and a non-zero exit, never a traceback (for click commands)."""
    import click

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                return fn(*args, **kwargs)
        except SiameseError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            raise click.Abort() from None

    return wrapper


@contextlib.contextmanager
def quiet_logger(name: str | None = None):
    """Only errors from the `name` logger (the root logger by default) while the block runs."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
