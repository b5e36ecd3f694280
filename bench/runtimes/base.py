"""The runtime interface: load an export, embed images, verify pairs, time one batch.

A runtime never decides whether its answers are right; the comparator in bench.parity does.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

from siamese.artifacts import ExportFolder


class Runtime(ABC):
    name: str = "?"
    precision: str = "fp32"  # picks the parity tolerances
    device: str = "cpu"

    def unavailable(self) -> str | None:
        """Why this runtime cannot run here, or None. Checked before load; never raises."""
        return None

    @abstractmethod
    def load(self, export: ExportFolder) -> None: ...

    @abstractmethod
    def embed(self, images: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 -> (N, 1024) float32."""

    @abstractmethod
    def pair(self, a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
        """Two (N, S, S, 3) uint8 batches -> {"score": (N,) float32, "same": (N,) bool}."""

    def timed_call(self, a: np.ndarray, b: np.ndarray) -> Callable[[], object]:
        """A zero-argument call that verifies one staged batch; inputs are already on the device."""
        return lambda: self.pair(a, b)

    def synchronize(self) -> None:
        """Wait for queued device work (CUDA); a no-op on CPU."""

    def describe(self) -> dict:
        return {"name": self.name, "precision": self.precision, "device": self.device}

    def close(self) -> None:
        """Release what load() took (sessions, modules, device memory)."""


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


class TorchRuntime(Runtime):
    """Shared by every runtime whose modules are torch callables (eager, compile, artifacts)."""

    autocast_dtype = None  # torch.bfloat16 / torch.float16 for autocast runtimes

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.modules: dict = {}

    def unavailable(self) -> str | None:
        if self.device.startswith("cuda") and not cuda_available():
            return "no CUDA device"
        return None

    @abstractmethod
    def load_modules(self, export: ExportFolder) -> dict: ...

    def load(self, export: ExportFolder) -> None:
        self.modules = self.load_modules(export)

    def _run(self, graph: str, *arrays):
        import torch

        tensors = [a if isinstance(a, torch.Tensor) else torch.from_numpy(a).to(self.device) for a in arrays]
        with (
            torch.inference_mode(),
            torch.autocast(
                self.device.split(":")[0],
                dtype=self.autocast_dtype or torch.float32,
                enabled=self.autocast_dtype is not None,
            ),
        ):
            return self.modules[graph](*tensors)

    def embed(self, images):
        return self._run("embedding", images).float().cpu().numpy()

    def pair(self, a, b):
        score, same = self._run("pair", a, b)
        return {"score": score.float().cpu().numpy(), "same": same.cpu().numpy()}

    def timed_call(self, a, b):
        import torch

        staged = [torch.from_numpy(x).to(self.device) for x in (a, b)]
        return lambda: self._run("pair", *staged)

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()

    def close(self) -> None:
        self.modules = {}
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
