"""The runner interface, in the manner of Polygraphy's runners.

A runner loads one kind of artifact of an export (always through `ExportFolder.check`, so
the manifest is verified), runs its graphs on numpy arrays, and states what it can do as
attributes. Tools (the verifier, the export check, the benchmark) only ever use this
interface and those attributes, never a runner's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from siamese.artifacts.folder import UNTRUSTED, ExportFolder
from siamese.core.errors import SiameseError
from siamese.core.spec import FEATURE_DIM


@dataclass(frozen=True)
class Abilities:
    """What a runner states about itself; the benchmark reports it and acts on it."""

    device: str  # "cpu" or "cuda"
    precision: str  # fp32, tf32, fp16, bf16: picks the parity tolerance
    artifact: str  # the export files it runs: weights, onnx, torchscript, pt2, aoti
    timed_with: str  # "wall clock" (the call returns when the work is done) or "CUDA events"
    takes_threads: bool  # honours a CPU thread count
    loads_code: bool  # its artifact can carry code (pickle or a native library) that runs on load
    isolate: bool = False  # benchmark it in a child process: its provider is known to crash the process
    served: bool = False  # a server answers: the benchmark also measures it under concurrent clients
    note: str = ""


class Runner(ABC):
    name: str = "?"
    abilities: Abilities

    def __init__(self, threads: int | None = None):
        self.threads = threads
        self.export: ExportFolder | None = None

    # -- what subclasses provide --

    def missing(self) -> str | None:
        """Why this runner cannot run on this machine (package, device, compiler), or None."""
        return None

    @abstractmethod
    def load(self, export: ExportFolder, graphs: Sequence[str], batches: Sequence[int] = ()) -> None:
        """Load `graphs` of the export; `batches` are the batch sizes it will be timed at."""

    @abstractmethod
    def run(self, graph: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Run one loaded graph on host arrays; host arrays out, in the metadata's output order."""

    def timed_call(self, a: np.ndarray, b: np.ndarray, from_host: bool = False) -> Callable[[], object]:
        """A zero-argument call that verifies one batch of pairs. Inputs are staged on the device
        once, unless `from_host`, where every call copies them there (a client's real path)."""
        return lambda: self.run("pair", [a, b])

    def synchronize(self) -> None:
        """Wait for queued device work; a no-op where calls are synchronous."""

    def reset_peak_memory(self) -> None:
        """Start a new peak device-memory measurement."""

    def peak_memory(self) -> int | None:
        """Peak device memory in bytes since the last reset, where the device reports it."""
        return None

    def close(self) -> None:
        """Release what load() took (sessions, modules, device memory)."""

    # -- shared by every runner --

    def unavailable(self, export: ExportFolder) -> str | None:
        """Why this runner cannot run this export here, or None: a missing package, device or artifact."""
        artifact = self.abilities.artifact
        if artifact != "weights" and artifact not in export.formats():
            return f"the export has no {artifact} artifacts (siamese-export --format {artifact})"
        if self.abilities.loads_code and not export.trusted:
            return f"{artifact} {UNTRUSTED}"
        return self.missing()

    def describe(self) -> dict:
        return {"name": self.name, **vars(self.abilities), "threads": self.threads}

    def embed(self, images: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 -> (N, 1024) float32 features."""
        return self.call("embedding", [images])["features"]

    def pair(self, a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
        """Two (N, S, S, 3) uint8 batches -> {"score": (N,) float32, "same": (N,) bool}."""
        return self.call("pair", [a, b])

    def compare(self, features_a: np.ndarray, features_b: np.ndarray) -> dict[str, np.ndarray]:
        """Two (N, 1024) float32 feature batches -> {"score", "same"}: pairs of images embedded once."""
        return self.call("compare", [features_a, features_b])

    def call(self, graph: str, inputs: list) -> dict[str, np.ndarray]:
        """One graph on checked host arrays -> its outputs by name ("same" as bool, the rest float32)."""
        if self.export is None:
            raise SiameseError(f"{self.name}: load an export first")
        meta = self.export.metadata
        names = meta.inputs(graph)
        if len(inputs) != len(names):
            raise SiameseError(f"{graph} takes {len(names)} inputs, got {len(inputs)}")
        check = check_features if graph == "compare" else check_images
        for name, x in zip(names, inputs, strict=True):
            check(name, x, meta.image_size)
        if len({x.shape[0] for x in inputs}) > 1:
            raise SiameseError(f"{graph}: inputs have different batch sizes {[x.shape[0] for x in inputs]}")
        outputs = self.run(graph, [np.ascontiguousarray(x) for x in inputs])
        named = dict(zip(meta.outputs(graph), outputs, strict=True))
        if "same" in named:
            named["same"] = np.asarray(named["same"]).astype(bool)
        return {k: v if k == "same" else np.asarray(v, np.float32) for k, v in named.items()}


def check_features(name: str, x, image_size: int) -> None:
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != FEATURE_DIM:
        got = f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}"
        raise SiameseError(f"{name}: expected float32 features of shape (N, {FEATURE_DIM}), got {got}")


def check_images(name: str, x, image_size: int) -> None:
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8:
        raise SiameseError(f"{name}: expected uint8 images, got {getattr(x, 'dtype', type(x).__name__)}")
    if x.ndim != 4 or x.shape[1:] != (image_size, image_size, 3):
        raise SiameseError(f"{name}: expected shape (N, {image_size}, {image_size}, 3) RGB, got {tuple(x.shape)}")
