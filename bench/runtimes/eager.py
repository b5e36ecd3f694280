"""PyTorch eager: fp32, bf16 autocast (CPU and CUDA), fp16 autocast (CUDA), channels_last."""

from __future__ import annotations

import torch

from bench.runtimes.base import TorchRuntime
from siamese.deploy import graphs_from_export


class Eager(TorchRuntime):
    def __init__(self, device: str = "cpu", precision: str = "fp32", channels_last: bool = False):
        super().__init__(device)
        self.precision = precision
        self.autocast_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        self.channels_last = channels_last

    def unavailable(self) -> str | None:
        if self.precision == "fp16" and not self.device.startswith("cuda"):
            return "fp16 autocast is for CUDA"
        return super().unavailable()

    def load_modules(self, export):
        graphs = graphs_from_export(export)
        fmt = torch.channels_last if self.channels_last else torch.preserve_format
        return {name: g.to(self.device, memory_format=fmt) for name, g in graphs.items() if name != "compare"}
