"""Load exported artifacts, checked against their manifest, in the runtime of their format.

Needs only numpy and the runtime itself (onnxruntime, or torch for TorchScript/torch.export):
no checkpoint and no training code. Every file is checked against `manifest.json` (size and
sha256) before it is loaded, and inputs are checked before they reach a runtime.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from siamese.errors import SiameseError
from siamese.files import sha256_file

# torch.export's own deserialiser trips over this deprecation of torch; it is not ours to fix
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)

FORMATS = ("onnx", "torchscript", "pt2", "aoti")
RUNTIMES = {"onnxruntime": "onnx", "torchscript": "torchscript", "pt2": "pt2", "aoti": "aoti"}
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "pt2": ".pt2", "aoti": ".aoti.pt2"}
MANIFEST = "manifest.json"
FEATURE_DIM = 1024  # siamese.model.FEATURE_DIM, repeated so loading needs no torch
METADATA = "metadata.json"


def artifact_name(graph: str, fmt: str) -> str:
    return graph + SUFFIX[fmt]


@dataclass
class ExportFolder:
    path: Path
    manifest: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path) -> ExportFolder:
        path = Path(path)
        if not (path / MANIFEST).is_file():
            raise SiameseError(f"{path}: not an export folder (no {MANIFEST}); run siamese-export first")
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            metadata = json.loads((path / METADATA).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SiameseError(f"{path}: unreadable manifest or metadata ({exc})") from None
        folder = cls(path, manifest, metadata)
        folder.check(METADATA)
        return folder

    def check(self, name: str) -> Path:
        """Refuse a file that is missing, or whose size or sha256 differ from the manifest."""
        entry = self.manifest.get("files", {}).get(name)
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

    def formats(self) -> list[str]:
        return [f for f in FORMATS if artifact_name("pair", f) in self.manifest.get("files", {})]

    @property
    def image_size(self) -> int:
        return int(self.metadata["image_size"])


class Artifact:
    """One graph in one runtime: call it with uint8 NHWC arrays, get named numpy outputs."""

    def __init__(self, folder: ExportFolder, graph: str, runtime: str, providers: list[str] | None = None):
        if runtime not in RUNTIMES:
            raise SiameseError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
        self.folder, self.graph, self.runtime = folder, graph, runtime
        self.format = RUNTIMES[runtime]
        self.output_names = folder.metadata["graphs"][graph]["outputs"]
        self.input_names = folder.metadata["graphs"][graph]["inputs"]
        if self.format not in folder.formats():
            raise SiameseError(f"{folder.path}: has no {self.format} artifacts (has: {', '.join(folder.formats())})")
        path = folder.check(artifact_name(graph, self.format))
        self._run = _LOADERS[self.format](folder, path, providers)

    def check_inputs(self, inputs: list[np.ndarray]) -> None:
        if len(inputs) != len(self.input_names):
            raise SiameseError(f"{self.graph} takes {len(self.input_names)} inputs, got {len(inputs)}")
        check = self._check_features if self.graph == "compare" else self._check_images
        for name, x in zip(self.input_names, inputs, strict=True):
            check(name, x)
        if len({x.shape[0] for x in inputs}) > 1:
            raise SiameseError(f"{self.graph}: inputs have different batch sizes {[x.shape[0] for x in inputs]}")

    @staticmethod
    def _check_features(name: str, x) -> None:
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != FEATURE_DIM:
            got = f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}"
            raise SiameseError(f"{name}: expected float32 features of shape (N, {FEATURE_DIM}), got {got}")

    def _check_images(self, name: str, x) -> None:
        size = self.folder.image_size
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8:
            raise SiameseError(f"{name}: expected uint8 images, got {getattr(x, 'dtype', type(x).__name__)}")
        if x.ndim != 4 or x.shape[1:] != (size, size, 3):
            raise SiameseError(f"{name}: expected shape (N, {size}, {size}, 3) RGB, got {tuple(x.shape)}")

    def __call__(self, *inputs: np.ndarray) -> dict[str, np.ndarray]:
        self.check_inputs(list(inputs))
        outputs = self._run([np.ascontiguousarray(x) for x in inputs])
        return dict(zip(self.output_names, outputs, strict=True))


def _onnx_external_files(path: Path) -> list[str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    names = set()
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            names |= {e.value for e in tensor.external_data if e.key == "location"}
    return sorted(names)


def _load_onnx(folder: ExportFolder, path: Path, providers: list[str] | None):
    from siamese.ort import make_session

    for data_file in _onnx_external_files(path):
        folder.check(data_file)  # missing external data: a clear error here, not ORT's
    session = make_session(path, providers)
    names = [o.name for o in session.get_outputs()]
    return lambda inputs: session.run(names, dict(zip([i.name for i in session.get_inputs()], inputs, strict=True)))


def _torch_runner(module):
    import torch

    def run(inputs):
        with torch.inference_mode():
            out = module(*[torch.from_numpy(x) for x in inputs])
        out = out if isinstance(out, tuple | list) else (out,)
        return [o.cpu().numpy() for o in out]

    return run


def _load_torchscript(folder, path, providers):
    import torch

    return _torch_runner(torch.jit.load(str(path), map_location="cpu"))


def _load_pt2(folder, path, providers):
    import torch

    return _torch_runner(torch.export.load(str(path)).module())


def _load_aoti(folder, path, providers):
    import torch._inductor

    return _torch_runner(torch._inductor.aoti_load_package(str(path)))


_LOADERS = {"onnx": _load_onnx, "torchscript": _load_torchscript, "pt2": _load_pt2, "aoti": _load_aoti}
