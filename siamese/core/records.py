"""Typed records: the one way a dict read from disk (or another module) becomes a dataclass.

`require` reads one key and checks its type, naming the file and key when it is missing or
wrong; `from_dict` builds a whole record with it, field by field, from the dataclass's own
annotations, and checks the record's schema. Every record that lands on disk carries its
`SCHEMA` ("name/version"): a newer version than this code reads is refused, not guessed at.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing

from siamese.core.errors import SiameseError

MISSING = dataclasses.MISSING


def _matches(value, kind) -> bool:
    if kind is typing.Any:
        return True
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return any(_matches(value, k) for k in typing.get_args(kind))
    if kind is type(None):
        return value is None
    origin = typing.get_origin(kind) or kind
    if origin is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is tuple:
        return isinstance(value, list | tuple)
    return isinstance(value, origin)


def describe(kind) -> str:
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return " or ".join(describe(k) for k in typing.get_args(kind) if k is not type(None))
    if kind is float:
        return "a number"
    return getattr(typing.get_origin(kind) or kind, "__name__", str(kind))


def require(d, key: str, kind, source: str, default=MISSING):
    """d[key] if it is of `kind`; `default` where the key is missing or None (if one is given);
    else a SiameseError naming `source` and the key. Floats must be finite."""
    value = d.get(key) if isinstance(d, dict) else None
    if value is None:
        if default is not MISSING:
            return default
        if not (isinstance(d, dict) and key in d and _matches(None, kind)):
            raise SiameseError(f"{source}: key {key!r} is missing")
    if not _matches(value, kind):
        raise SiameseError(f"{source}: key {key!r} should be {describe(kind)}, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise SiameseError(f"{source}: key {key!r} is {value}, not a finite number")
    return value


def check_schema(d, schema: str, source: str) -> None:
    """Refuse a record of another kind, or of a newer version than `schema` ("name/version")."""
    name, version = schema.rsplit("/", 1)
    found = d.get("schema", schema) if isinstance(d, dict) else None
    if not isinstance(found, str) or "/" not in found or found.rsplit("/", 1)[0] != name:
        raise SiameseError(f"{source}: not a {name} record (schema {found!r})")
    found_version = found.rsplit("/", 1)[1]
    if not found_version.isdigit() or int(found_version) > int(version):
        raise SiameseError(f"{source}: {found} is newer than this version reads ({schema}); upgrade siamese-verify")


def from_dict(cls, d, source: str):
    """A `cls` record from `d`, every field checked against its annotation (a missing field
    takes its default, if it has one); keys the record does not know are ignored."""
    if not isinstance(d, dict):
        raise SiameseError(f"{source}: expected a mapping, got {type(d).__name__}")
    if hasattr(cls, "SCHEMA"):
        check_schema(d, cls.SCHEMA, source)
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        default = f.default if f.default is not MISSING else MISSING
        if f.default_factory is not MISSING:
            default = f.default_factory()
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            raw = require(d, f.name, dict, source, default)
            values[f.name] = raw if isinstance(raw, kind) else from_dict(kind, raw, f"{source}: {f.name}")
        else:
            values[f.name] = require(d, f.name, kind, source, default)
    return cls(**values)


def to_dict(record) -> dict:
    """The record as plain data, with its schema first."""
    data = dataclasses.asdict(record)
    return {"schema": record.SCHEMA, **data} if hasattr(record, "SCHEMA") else data
