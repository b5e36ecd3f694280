"""torch.compile (Inductor) of the eager fp32 graphs; the first call of each batch size compiles."""

from __future__ import annotations

import shutil

import torch

from bench.runtimes.base import TorchRuntime
from siamese.deploy import graphs_from_export


class Compiled(TorchRuntime):
    def __init__(self, device: str = "cpu", mode: str | None = None):
        super().__init__(device)
        self.mode = mode

    def unavailable(self) -> str | None:
        if not self.device.startswith("cuda") and not (shutil.which("c++") or shutil.which("g++")):
            return "Inductor on CPU needs a C++ compiler"
        return super().unavailable()

    def load_modules(self, export):
        graphs = graphs_from_export(export)
        return {
            name: torch.compile(g.to(self.device), mode=self.mode, dynamic=False)
            for name, g in graphs.items()
            if name != "compare"
        }

    def describe(self) -> dict:
        return {
            **super().describe(),
            "mode": self.mode or "default",
            "note": "compile time is in the warm-up",
        }
