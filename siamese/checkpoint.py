"""Checkpoints: written atomically, read without ever running pickled code.

A checkpoint is a plain dict of tensors and primitives (see `make_checkpoint`), so
`torch.load(weights_only=True)` reads all of it; a file carrying arbitrary pickled objects
is refused with a clear message.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from siamese.errors import SiameseError
from siamese.files import atomic_write

FORMAT = "siamese-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: Path, checkpoint: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise SiameseError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SiameseError(f"{path}: refused to load, it holds more than tensors and plain values ({first})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise SiameseError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise SiameseError(f"{path}: not a siamese checkpoint")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise SiameseError(
            f"{path}: checkpoint format {ckpt['format_version']} is newer than this version reads "
            f"({FORMAT_VERSION}); upgrade siamese-verify"
        )
    return ckpt
