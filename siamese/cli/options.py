"""Options shared by several commands, and the options generated from a configuration
dataclass: each field's default, type and help live once, on the field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

KEY_ENV = "SIAMESE_EXPORT_KEY"  # a key file's path, for signing exports and verifying them

# the export a command reads: siamese-verify, siamese-eval and siamese-serve
export_dir_option = click.option(
    "--export",
    "export_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="export folder; default the newest under exports/",
)


def options_from(cls, skip=()):
    """click options for every field of dataclass `cls` that carries a "help" in its metadata:
    `--field-name`, the field's default, and its metadata's click `type`; a bool field without
    a type is a flag (`--x/--no-x` when it defaults to True)."""

    def decorate(fn):
        for f in reversed(dataclasses.fields(cls)):
            if "help" not in f.metadata or f.name in skip:
                continue
            flag, kind, help = "--" + f.name.replace("_", "-"), f.metadata.get("type"), f.metadata["help"]
            if kind is None and f.default is True:
                fn = click.option(f"{flag}/--no-{flag[2:]}", f.name, default=True, help=help)(fn)
            elif kind is None and f.default is False:
                fn = click.option(flag, f.name, is_flag=True, help=help)(fn)
            else:
                fn = click.option(flag, f.name, type=kind, default=f.default, help=help)(fn)
        return fn

    return decorate


def policy_options(fn):
    """--trust-export and --verify-key: how a reading command may open an export."""
    fn = click.option(
        "--verify-key",
        type=click.Path(path_type=Path, exists=True, dir_okay=False),
        envvar=KEY_ENV,
        default=None,
        help=f"refuse an export whose manifest was not signed with this key file (or ${KEY_ENV})",
    )(fn)
    return click.option(
        "--trust-export",
        is_flag=True,
        help="allow loading TorchScript, pt2 and AOTInductor artifacts, which can run code (see README, Security)",
    )(fn)


def sign_key_option(fn):
    return click.option(
        "--sign-key",
        type=click.Path(path_type=Path, exists=True, dir_okay=False),
        envvar=KEY_ENV,
        default=None,
        help=f"sign the manifest with this key file (or ${KEY_ENV}), e.g. made by: head -c 32 /dev/urandom > KEY",
    )(fn)
