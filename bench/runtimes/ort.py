"""ONNX Runtime with the CPU, CUDA or TensorRT execution provider.

A session whose first provider is not the one asked for is refused (siamese.ort), so a
silent fall back to CPU can never pass for a GPU figure. On CUDA and TensorRT, timing uses
IO binding with inputs and outputs resident on the GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.runtimes.base import Runtime
from siamese.ort import PROVIDER_ALIASES, import_onnxruntime, make_session


class OnnxRuntime(Runtime):
    def __init__(self, provider: str = "cpu", threads: int | None = None, trt_cache: Path = Path("cache/trt")):
        self.provider = PROVIDER_ALIASES[provider]
        self.device = "cpu" if provider == "cpu" else "cuda"
        self.threads = threads
        self.trt_cache = trt_cache
        self.sessions: dict = {}

    def unavailable(self) -> str | None:
        try:
            ort = import_onnxruntime()
        except Exception as exc:  # SiameseError or a broken install: either way, not here
            return str(exc)
        if self.provider not in ort.get_available_providers():
            return f"onnxruntime {ort.__version__} has no {self.provider} (install onnxruntime-gpu on a GPU machine)"
        return None

    def _providers(self) -> list:
        if self.provider == "TensorrtExecutionProvider":
            self.trt_cache.mkdir(parents=True, exist_ok=True)
            options = {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(self.trt_cache)}
            return [(self.provider, options), "CUDAExecutionProvider"]
        return [self.provider]

    def load(self, export) -> None:
        for graph in ("embedding", "pair"):
            path = export.check(f"{graph}.onnx")
            self.sessions[graph] = make_session(path, self._providers(), self.threads)

    def _run(self, graph: str, *arrays):
        session = self.sessions[graph]
        names = [i.name for i in session.get_inputs()]
        return session.run(None, dict(zip(names, arrays, strict=True)))

    def embed(self, images):
        return self._run("embedding", images)[0]

    def pair(self, a, b):
        score, same = self._run("pair", a, b)
        return {"score": score, "same": same}

    def timed_call(self, a, b):
        if self.device == "cpu":
            return lambda: self._run("pair", a, b)
        ort = import_onnxruntime()
        session = self.sessions["pair"]
        binding = session.io_binding()
        for name, x in zip([i.name for i in session.get_inputs()], (a, b), strict=True):
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(x), "cuda", 0))
        for out in session.get_outputs():
            binding.bind_output(out.name, "cuda", 0)

        def run():
            session.run_with_iobinding(binding)
            binding.synchronize_outputs()

        return run

    def describe(self) -> dict:
        providers = self.sessions["pair"].get_providers() if self.sessions else [self.provider]
        return {**super().describe(), "providers": providers, "threads": self.threads}

    def close(self) -> None:
        self.sessions = {}
