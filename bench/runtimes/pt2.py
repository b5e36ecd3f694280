"""The torch.export artifacts (`*.pt2` ExportedProgram) and the AOTInductor packages (`*.aoti.pt2`)."""

from __future__ import annotations

import torch

from bench.runtimes.base import TorchRuntime


class ExportedProgram(TorchRuntime):
    def load_modules(self, export):
        return {
            g: torch.export.load(str(export.check(f"{g}.pt2"))).module().to(self.device) for g in ("embedding", "pair")
        }


class AOTInductor(TorchRuntime):
    """AOTInductor packages are compiled for the device they were exported on (CPU here)."""

    def load_modules(self, export):
        import torch._inductor

        if "aoti" not in export.formats():
            raise FileNotFoundError(f"{export.path} has no AOTInductor package (siamese-export --format aoti)")
        return {g: torch._inductor.aoti_load_package(str(export.check(f"{g}.aoti.pt2"))) for g in ("embedding", "pair")}
