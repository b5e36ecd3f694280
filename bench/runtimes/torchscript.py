"""The TorchScript artifacts (`*.torchscript.pt`), loaded with torch.jit.load."""

from __future__ import annotations

import torch

from bench.runtimes.base import TorchRuntime


class TorchScript(TorchRuntime):
    def load_modules(self, export):
        return {
            g: torch.jit.load(str(export.check(f"{g}.torchscript.pt")), map_location=self.device)
            for g in ("embedding", "pair")
        }
