"""The TorchScript artifacts (`*.torchscript.pt`), loaded with torch.jit.load."""

from __future__ import annotations

import torch

from siamese.artifacts.formats import artifact_name
from siamese.backends.torch.runner import TorchRunner


class TorchScript(TorchRunner):
    def __init__(self, device="cpu", precision="fp32", threads=None):
        super().__init__(device, precision, threads)
        self.abilities = self.torch_abilities("torchscript", loads_code=True)

    def load_modules(self, export, graphs, batches):
        return {
            g: torch.jit.load(str(export.check_code(artifact_name(g, "torchscript"))), map_location=self.device)
            for g in graphs
        }
