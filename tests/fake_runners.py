"""Runners that misbehave on purpose, importable by the benchmark's child processes."""

import os
import signal
from dataclasses import replace

from siamese.backends.torch.eager import Eager


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
