"""PyTorch eager, rebuilt from the export's tensor-only weights: fp32, TF32, bf16/fp16 autocast, channels_last."""

from __future__ import annotations

import torch

from siamese.artifacts.graphs import graphs_from_weights
from siamese.backends.torch.runner import TorchRunner
from siamese.core.provenance import native_bf16


class Eager(TorchRunner):
    def __init__(self, device="cpu", precision="fp32", channels_last: bool = False, threads=None):
        super().__init__(device, precision, threads)
        self.channels_last = channels_last
        self.abilities = self.torch_abilities(
            "weights",
            loads_code=False,
            note="channels_last weights and input" if channels_last else "contiguous NCHW input",
        )

    def missing(self):
        if self.precision == "fp16" and not self.on_cuda:
            return "fp16 autocast is for CUDA"
        if self.precision == "bf16" and not self.on_cuda and not native_bf16(torch.device("cpu")):
            return f"this CPU ({torch.backends.cpu.get_cpu_capability()}) has no native bf16 kernels"
        return super().missing()

    def load_modules(self, export, graphs, batches):
        built = graphs_from_weights(export)
        modules = {}
        for name in graphs:
            graph = built[name].to(self.device)
            if self.channels_last and name != "compare":
                graph = graph.to(memory_format=torch.channels_last)
                graph.preprocess.memory_format = torch.channels_last
            modules[name] = graph
        return modules
