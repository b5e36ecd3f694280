"""Runners that misbehave on purpose, importable by the benchmark's child processes."""

import os
import signal
import time
from dataclasses import replace

from siamese.backends.torch.eager import Eager
from siamese.backends.torch.runner import TorchRunner


class Segfaulting(Eager):
    """Loads fine, then kills its own process with SIGSEGV on the first pair, as a broken provider would."""

    def pair(self, a, b):
        os.kill(os.getpid(), signal.SIGSEGV)


class OutOfMemory(Eager):
    """Raises what CUDA raises when memory runs out, and records that close() ran."""

    closed = []

    def pair(self, a, b):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def close(self):
        OutOfMemory.closed.append(self.name)
        super().close()


class BrokenLoad(Eager):
    """Available, but its load raises a bug, not a missing dependency."""

    def load(self, export, graphs, batches=()):
        raise KeyError("initializer 'fc.weight'")


class Slowed(Eager):
    """Eager, with `delay` seconds of sleep in every pair call: code that got slower, on purpose."""

    def __init__(self, delay: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.delay = delay

    def forward(self, graph, inputs):
        if graph == "pair":
            time.sleep(self.delay)
        return super().forward(graph, inputs)


class SlowPatch(Slowed):
    """Slowed by `delay` in every pair call, and by `extra` more in the next `calls` pair calls of
    any instance: a neighbour that took the cores for a few seconds, not code that got slower."""

    calls = 0
    seen = 0  # pair calls so far, slow or not

    def __init__(self, extra: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.extra = extra

    def forward(self, graph, inputs):
        SlowPatch.seen += graph == "pair"
        if graph == "pair" and SlowPatch.calls > 0:
            SlowPatch.calls -= 1
            time.sleep(self.extra)
        return super().forward(graph, inputs)


class Scaled(Eager):
    """A wrong runtime of a given precision: every output scaled, decisions recomputed from the scaled score."""

    def __init__(self, factor: float = 1.0099, claim: str = "fp16", **kwargs):
        super().__init__(**kwargs)
        self.factor = factor
        self.abilities = replace(self.abilities, precision=claim)  # held to that precision's tolerance

    def run(self, graph, inputs):
        out = super().run(graph, inputs)
        if graph == "embedding":
            return [out[0] * self.factor]
        score = out[0] * self.factor
        threshold = self.export.metadata.threshold
        return [score, score > threshold if self.export.metadata.higher_is_same else score < threshold]


def write_fake(module, graph, path, meta, calibration=None):
    """The writer of a format that exists only in tests: the graph traced and saved under its own suffix."""
    import torch

    from siamese.artifacts.graphs import example_inputs

    torch.jit.save(torch.jit.trace(module, example_inputs(graph, meta["image_size"])), str(path))
    return {"method": "torch.jit.trace, as the fake format"}


class FakeFormat(TorchRunner):
    """The runner of the test-only format: reads its artifacts through the manifest like any other."""

    def __init__(self, device="cpu", precision="fp32", threads=None):
        super().__init__(device, precision, threads)
        self.abilities = self.torch_abilities("fake", loads_code=False)

    def load_modules(self, export, graphs, batches):
        import torch

        from siamese.artifacts.formats import artifact_name

        return {g: torch.jit.load(str(export.check(artifact_name(g, "fake")))) for g in graphs}
