"""What every runner of torch modules shares: device staging, autocast, CUDA math mode, memory."""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import Sequence

import numpy as np
import torch

from siamese.artifacts.folder import ExportFolder
from siamese.backends.base import Abilities, Runner

AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


@contextlib.contextmanager
def cuda_math(allow_tf32: bool):
    """cuBLAS and cuDNN fp32 math with TF32 allowed or not, restored afterwards.

    PyTorch's cuDNN convolutions default to TF32, which fails an fp32 parity gate: fp32
    runners turn it off, and TF32 is a precision of its own.
    """
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow_tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class TorchRunner(Runner):
    """Runs torch callables (eager graphs, compiled graphs, loaded artifacts) on one device."""

    def __init__(self, device: str = "cpu", precision: str = "fp32", threads: int | None = None):
        super().__init__(threads)
        self.device = device
        self.precision = precision
        self.modules: dict = {}

    def torch_abilities(self, artifact: str, loads_code: bool, note: str = "") -> Abilities:
        cuda = self.device.startswith("cuda")
        return Abilities(
            device=self.device,
            precision=self.precision,
            artifact=artifact,
            timed_with="CUDA events" if cuda else "wall clock",
            takes_threads=not cuda,
            loads_code=loads_code,
            note=note,
        )

    @property
    def on_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def missing(self) -> str | None:
        if self.on_cuda and not torch.cuda.is_available():
            return "no CUDA device"
        if self.precision == "tf32" and not self.on_cuda:
            return "TF32 is a CUDA math mode"
        return None

    @abstractmethod
    def load_modules(self, export: ExportFolder, graphs: Sequence[str], batches: Sequence[int]) -> dict: ...

    def load(self, export, graphs, batches=()) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        self.export = export
        self.modules = self.load_modules(export, graphs, batches)

    def context(self) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self.precision in AUTOCAST:
            stack.enter_context(torch.autocast(self.device.split(":")[0], dtype=AUTOCAST[self.precision]))
        if self.on_cuda:
            stack.enter_context(cuda_math(allow_tf32=self.precision == "tf32"))
        return stack

    def forward(self, graph: str, tensors: list[torch.Tensor]):
        with self.context():
            return self.modules[graph](*tensors)

    def to_device(self, arrays) -> list[torch.Tensor]:
        return [torch.from_numpy(np.ascontiguousarray(x)).to(self.device) for x in arrays]

    def run(self, graph, inputs):
        out = self.forward(graph, self.to_device(inputs))
        out = out if isinstance(out, tuple | list) else (out,)
        return [(o.float() if o.is_floating_point() else o).cpu().numpy() for o in out]

    def timed_call(self, a, b, from_host=False):
        if from_host:
            return lambda: self.forward("pair", self.to_device([a, b]))
        staged = self.to_device([a, b])
        return lambda: self.forward("pair", staged)

    def synchronize(self) -> None:
        if self.on_cuda:
            torch.cuda.synchronize(self.device)

    def reset_peak_memory(self) -> None:
        if self.on_cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_memory(self) -> int | None:
        return torch.cuda.max_memory_allocated(self.device) if self.on_cuda else None

    def close(self) -> None:
        self.modules = {}
        if self.on_cuda:
            torch.cuda.empty_cache()
