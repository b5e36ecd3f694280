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
    """click options for every field of dataclass `cls` made with siamese.core.params.option:
    `--field-name` (or the field's `flag`), the field's default, its click `type` and help; a
    bool field without a type is a flag (`--x/--no-x` when it defaults to True)."""

    def decorate(fn):
        for f in reversed(dataclasses.fields(cls)):
            if "help" not in f.metadata or f.name in skip:
                continue
            meta = f.metadata
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            flag, kind = meta.get("flag") or "--" + f.name.replace("_", "-"), meta.get("type")
            kwargs = {"help": meta["help"], **meta.get("click", {})}
            if kind is None and default is True:
                decls = [flag if "/" in flag else f"{flag}/--no-{flag[2:]}"]
                fn = click.option(*decls, f.name, **{"default": True, **kwargs})(fn)
            elif kind is None and default is False:
                fn = click.option(flag, f.name, **{"is_flag": True, **kwargs})(fn)
            else:
                fn = click.option(flag, f.name, **{"type": kind, "default": default, **kwargs})(fn)
        return fn

    return decorate


def split_options(cls, options: dict) -> dict:
    """Take out of `options` the values of `cls`'s fields (a nested configuration's options)."""
    return {f.name: options.pop(f.name) for f in dataclasses.fields(cls) if f.name in options}


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
