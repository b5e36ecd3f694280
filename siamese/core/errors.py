"""The exception and warning types the command-line tools turn into one-line messages, and
the quieting of libraries' own chatter."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import sys
import threading
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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that every cleanup that runs for Ctrl-C runs for it."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt():
    """While the block runs (in the main thread), SIGTERM raises Terminated: partial files are
    removed, servers stopped and child processes ended, as after Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def user_errors(fn):
    """Show a SiameseError as one line and a non-zero exit, never a traceback (for click
    commands); SIGTERM cleans up like Ctrl-C and exits 143."""
    import click

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with warnings.catch_warnings(), sigterm_as_interrupt():
                warnings.showwarning = _show_warning
                return fn(*args, **kwargs)
        except SiameseError as exc:
            raise click.ClickException(str(exc)) from None
        except Terminated:
            print("terminated", file=sys.stderr)
            raise SystemExit(128 + signal.SIGTERM) from None
        except KeyboardInterrupt:
            raise click.Abort() from None

    return wrapper


def die_with_parent(parent: int) -> None:
    """In a child process of `parent` (a pid): be sent SIGTERM when the parent dies, however it
    dies (Linux; elsewhere the parent's own cleanup ends its children)."""
    import ctypes

    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


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
