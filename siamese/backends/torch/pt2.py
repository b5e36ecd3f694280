"""The torch.export artifacts (`*.pt2` ExportedProgram) and the AOTInductor packages (`*.aoti.pt2`)."""

from __future__ import annotations

import torch

from siamese.artifacts.formats import artifact_name
from siamese.backends.torch.runner import TorchRunner


def load_program(path, device: str):
    """An ExportedProgram moved to `device`.

    A saved program pins `device=cpu` in its `_assert_tensor_metadata` nodes and constants,
    so `.module().to("cuda")` fails on its first call; torch.export's own pass rewrites them.
    """
    from torch.export.passes import move_to_device_pass

    program = torch.export.load(str(path))
    if device != "cpu":
        program = move_to_device_pass(program, device)
    return program


class ExportedProgram(TorchRunner):
    def __init__(self, device="cpu", precision="fp32", threads=None):
        super().__init__(device, precision, threads)
        self.abilities = self.torch_abilities("pt2", loads_code=True)

    def load_modules(self, export, graphs, batches):
        return {g: load_program(export.check_code(artifact_name(g, "pt2")), self.device).module() for g in graphs}


class AOTInductor(TorchRunner):
    """AOTInductor packages are compiled for the device they were exported on (the CPU here)."""

    def __init__(self, device="cpu", precision="fp32", threads=None):
        super().__init__(device, precision, threads)
        self.abilities = self.torch_abilities("aoti", loads_code=True, note="a compiled shared library")

    def load_modules(self, export, graphs, batches):
        import torch._inductor

        return {g: torch._inductor.aoti_load_package(str(export.check_code(artifact_name(g, "aoti")))) for g in graphs}
