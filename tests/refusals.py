"""Shared by the bad-input tests of every entry point: refuse, say why in one line, change nothing."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from siamese.artifacts.folder import METADATA
from siamese.tasks.export import write_manifest

USAGE = 2  # click: a bad option value or a bad combination of options
ERROR = 1  # siamese: a SiameseError, shown as one line


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file under `roots` (hidden ones included) -> sha256: what 'nothing changed' compares."""
    files = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.is_file() and not path.is_symlink():
                files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def assert_refused(command, args: list[str], message: str, code: int, watched: list[Path], env=None) -> str:
    """Run a click command; it must exit with `code` and a one-line `message` (a regex), no
    traceback, and leave every file under `watched` as it was (nothing new, nothing changed)."""
    before = snapshot(*watched)
    result = CliRunner().invoke(command, [str(a) for a in args], env=env)
    output = result.output
    assert result.exit_code == code, f"exit {result.exit_code}, expected {code}: {output}"
    assert isinstance(result.exception, SystemExit), f"raised {result.exception!r}: {output}"
    assert "Traceback" not in output
    assert re.search(message, output), f"{message!r} not in: {output}"
    assert snapshot(*watched) == before, "files changed although the command was refused"
    return output


GOOD_PAIRS = "A/1.png A/2.png 1\nA/1.png B/1.png 0\n"

# Metadata a careless editor could leave behind, and the message that names what is wrong.
METADATA_EDITS = [
    (lambda m: m.__setitem__("threshold", float("nan")), "key 'threshold' is nan, not a finite number"),
    (lambda m: m.pop("variant"), "key 'variant' is missing"),
    (lambda m: m.__setitem__("image_size", "128"), "key 'image_size' should be int, got str"),
    (lambda m: m.__setitem__("image_size", 12), "image_size 12 must be a multiple of 8"),
    (lambda m: m.__setitem__("dtype", "int3"), "dtype 'int3' is not one of"),
    (lambda m: m.__setitem__("higher_is_same", "yes"), "key 'higher_is_same' should be bool, got str"),
    (lambda m: m.__setitem__("image_size", 10**6), "image_size 1000000 must be a multiple of 8"),
    (lambda m: m.__setitem__("image_size", 24), r"describes \{'image_size': 24\}, but weights.safetensors holds"),
    (lambda m: m.__setitem__("margin", 2.5), r"describes \{'margin': 2.5\}, but weights.safetensors holds"),
    (lambda m: m.__setitem__("margin", float("nan")), "key 'margin' is nan, not a finite number"),
    (lambda m: m.__setitem__("graphs", {}), "graphs {} are not the exported graphs"),
    (lambda m: m["graphs"]["pair"].__setitem__("outputs", ["distance", "same"]), "are not the exported graphs"),
    (lambda m: m["normalization"].__setitem__("mean", ["a", 0.5, 0.5]), "normalization: mean and std must be 3"),
    (lambda m: m["normalization"].pop("std"), "normalization: 'std'"),
    (lambda m: m.__setitem__("head", "triple"), "unknown variant 'contrastive' or head 'triple'"),
    (lambda m: m.__setitem__("variant", "triplet"), "unknown variant 'triplet'"),
]


def image_root(path: Path) -> Path:
    """Two people, A and B, with two random 32x32 PNGs each: 1.png and 2.png."""
    rng = np.random.default_rng(0)
    for person in ("A", "B"):
        (path / "img" / person).mkdir(parents=True)
        for i in (1, 2):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(path / "img" / person / f"{i}.png")
    return path / "img"


def pair_list(path: Path, text: str, name: str = "pairs.txt") -> Path:
    (path / name).write_text(text)
    return path / name


def edited_export(export: Path, path: Path, edit) -> Path:
    """A copy with its metadata edited and the manifest re-hashed, as a careless editor would."""
    copy = path / "export"
    shutil.copytree(export, copy)
    meta = json.loads((copy / METADATA).read_text())
    edit(meta)
    (copy / METADATA).write_text(json.dumps(meta))
    write_manifest(copy)
    return copy
