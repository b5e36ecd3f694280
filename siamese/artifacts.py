"""An export folder as a reader sees it: its manifest, its metadata, and checked file paths.

Needs only the standard library: every runtime (`siamese.runtimes`) opens an export through
`ExportFolder`, and `ExportFolder.check` refuses a file that is missing, truncated or modified
before any runtime reads it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from siamese.errors import SiameseError
from siamese.files import sha256_file

FORMATS = ("onnx", "torchscript", "pt2", "aoti")
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "pt2": ".pt2", "aoti": ".aoti.pt2"}
GRAPHS = ("embedding", "pair", "compare")
MANIFEST = "manifest.json"
METADATA = "metadata.json"
# the fp32 weights of the checkpoint, as tensors only: eager runtimes and the parity reference
# rebuild the network from this file, so neither ever unpickles anything from an export
WEIGHTS = "weights.safetensors"
FEATURE_DIM = 1024  # siamese.model.FEATURE_DIM, repeated so reading an export needs no torch
DTYPES = ("fp32", "fp16", "bf16")  # what an export can be written in


def artifact_name(graph: str, fmt: str) -> str:
    return graph + SUFFIX[fmt]


@dataclass(frozen=True)
class ExportMetadata:
    """What every tool needs to know about an export, read and checked in one place."""

    variant: str
    threshold: float
    higher_is_same: bool
    margin: float
    image_size: int
    dtype: str
    normalization: dict
    graphs: dict  # graph -> {"inputs": [...], "outputs": [...]}
    head: str = "concat"  # the bce head (siamese.model.HEADS); exports before heads existed have the spec's
    training: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict, repr=False)  # everything, as written

    @classmethod
    def from_dict(cls, d: dict, source: str) -> ExportMetadata:
        def need(key: str, kind):
            value = d.get(key) if isinstance(d, dict) else None
            if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
                raise SiameseError(f"{source}: key {key!r} is missing or not a {getattr(kind, '__name__', kind)}")
            return value

        threshold = float(need("threshold", int | float))
        if not math.isfinite(threshold):
            raise SiameseError(f"{source}: threshold {threshold} is not finite")
        dtype = need("dtype", str)
        if dtype not in DTYPES:
            raise SiameseError(f"{source}: dtype {dtype!r} is not one of {', '.join(DTYPES)}")
        image_size = need("image_size", int)
        if image_size < 8 or image_size % 8:
            raise SiameseError(f"{source}: image_size {image_size} is not a multiple of 8")
        return cls(
            variant=need("variant", str),
            threshold=threshold,
            higher_is_same=need("higher_is_same", bool),
            margin=float(need("margin", int | float)),
            image_size=image_size,
            dtype=dtype,
            normalization=need("normalization", dict),
            graphs=need("graphs", dict),
            head=d.get("head", "concat"),
            training=d.get("training") or {},
            raw=d,
        )

    @property
    def name(self) -> str:
        """The variant, and the head when it is not the spec's (as siamese.model.ModelConfig.name)."""
        return self.variant if self.head == "concat" else f"{self.variant}-{self.head}"

    def inputs(self, graph: str) -> list[str]:
        return list(self.graphs[graph]["inputs"])

    def outputs(self, graph: str) -> list[str]:
        return list(self.graphs[graph]["outputs"])


@dataclass
class ExportFolder:
    path: Path
    manifest: dict
    metadata: ExportMetadata

    @classmethod
    def open(cls, path: Path) -> ExportFolder:
        path = Path(path)
        if not (path / MANIFEST).is_file():
            raise SiameseError(f"{path}: not an export folder (no {MANIFEST}); run siamese-export first")
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            raw = json.loads((path / METADATA).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SiameseError(f"{path}: unreadable manifest or metadata ({exc})") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
            raise SiameseError(f"{path / MANIFEST}: has no 'files' table")
        folder = cls(path, manifest, ExportMetadata.from_dict(raw, str(path / METADATA)))
        folder.check(METADATA)
        return folder

    def check(self, name: str) -> Path:
        """Refuse a file that is missing, or whose size or sha256 differ from the manifest."""
        entry = self.manifest["files"].get(name)
        file = self.path / name
        if entry is None:
            raise SiameseError(f"{file}: not listed in {MANIFEST}")
        if not file.is_file():
            raise SiameseError(f"{file}: listed in {MANIFEST} but missing")
        if file.stat().st_size != entry["size"]:
            raise SiameseError(
                f"{file}: size {file.stat().st_size} differs from the manifest's {entry['size']} (truncated?)"
            )
        if sha256_file(file) != entry["sha256"]:
            raise SiameseError(f"{file}: sha256 differs from the manifest (modified or corrupted); re-export it")
        return file

    def sha256(self, name: str) -> str:
        return self.manifest["files"][name]["sha256"]

    def has(self, name: str) -> bool:
        return name in self.manifest["files"]

    def formats(self) -> list[str]:
        return [f for f in FORMATS if self.has(artifact_name("pair", f))]

    @property
    def image_size(self) -> int:
        return self.metadata.image_size


def newest_export(root: Path = Path("exports")) -> Path:
    folders = [p.parent for p in Path(root).glob(f"*/{MANIFEST}")]
    if not folders:
        raise SiameseError(f"no export found under {root}/; run siamese-export, or pass --export DIR")
    return max(folders, key=lambda p: (p / MANIFEST).stat().st_mtime)
