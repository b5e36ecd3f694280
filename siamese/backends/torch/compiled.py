"""torch.compile (Inductor) of the eager fp32 graphs: one static compile per batch size.

Dynamo silently falls back to eager once a function has been recompiled `recompile_limit`
times; here the limit is raised to cover every batch size a run uses and hitting it is an
error, so a compiled figure is never an eager one. The first call at each batch size compiles:
the benchmark reports it apart from the timed calls.
"""

from __future__ import annotations

import torch

from siamese.artifacts.graphs import graphs_from_weights
from siamese.backends.torch.runner import TorchRunner
from siamese.core.provenance import cxx_compiler


class Compiled(TorchRunner):
    def __init__(self, device="cpu", precision="fp32", mode: str | None = None, max_recompiles: int = 64, threads=None):
        super().__init__(device, precision, threads)
        self.mode = mode
        self.max_recompiles = max_recompiles
        self.abilities = self.torch_abilities(
            "weights",
            loads_code=False,
            note=f"mode {mode or 'default'}, dynamic=False: one compile per batch size, "
            f"error after {max_recompiles} recompiles",
        )

    def missing(self):
        if not self.on_cuda and not cxx_compiler():
            return "Inductor on CPU needs a C++ compiler"
        return super().missing()

    def load_modules(self, export, graphs, batches):
        built = graphs_from_weights(export)
        return {name: torch.compile(built[name].to(self.device), mode=self.mode, dynamic=False) for name in graphs}

    def forward(self, graph, tensors):
        with torch._dynamo.config.patch(recompile_limit=self.max_recompiles, fail_on_recompile_limit_hit=True):
            return super().forward(graph, tensors)
