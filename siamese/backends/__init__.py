"""Every runtime an export can run in, under one set of names used by every tool.

Names read `<runtime>[-<precision>]-<device>`. `RUNTIMES` is the single registry that
`siamese-verify --runtime`, `siamese-bench --runtimes`, the export check (each format names
its runtime in siamese.artifacts.formats) and the
parametrized tests all iterate; modules are imported only when a runner is created, so
optional dependencies load only when used.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from siamese.backends.base import Abilities, Runner
from siamese.core.errors import SiameseError

__all__ = ["RUNTIMES", "REFERENCE", "Abilities", "Runner", "RunnerSpec", "create"]


@dataclass(frozen=True)
class RunnerSpec:
    module: str
    cls: str
    kwargs: dict = field(default_factory=dict)

    def create(self, name: str, threads: int | None = None) -> Runner:
        runner = getattr(importlib.import_module(self.module), self.cls)(**self.kwargs, threads=threads)
        runner.name = name
        return runner


def _spec(module: str, cls: str, **kwargs) -> RunnerSpec:
    return RunnerSpec(f"siamese.backends.{module}", cls, kwargs)


RUNTIMES: dict[str, RunnerSpec] = {
    "eager-fp32-cpu": _spec("torch.eager", "Eager"),
    "eager-bf16-cpu": _spec("torch.eager", "Eager", precision="bf16"),
    "eager-fp32-channels-last-cpu": _spec("torch.eager", "Eager", channels_last=True),
    "compile-cpu": _spec("torch.compiled", "Compiled"),
    "torchscript-cpu": _spec("torch.torchscript", "TorchScript"),
    "pt2-cpu": _spec("torch.pt2", "ExportedProgram"),
    "aoti-cpu": _spec("torch.pt2", "AOTInductor"),
    "ort-cpu": _spec("onnx.runtime", "OnnxRuntime"),
    "openvino-cpu": _spec("openvino.runtime", "OpenVino"),
    "openvino-bf16-cpu": _spec("openvino.runtime", "OpenVino", precision="bf16"),
    "openvino-ir-cpu": _spec("openvino.runtime", "OpenVino", artifact="openvino"),
    "eager-fp32-cuda": _spec("torch.eager", "Eager", device="cuda"),
    "eager-tf32-cuda": _spec("torch.eager", "Eager", device="cuda", precision="tf32"),
    "eager-bf16-cuda": _spec("torch.eager", "Eager", device="cuda", precision="bf16"),
    "eager-fp16-cuda": _spec("torch.eager", "Eager", device="cuda", precision="fp16"),
    "eager-fp32-channels-last-cuda": _spec("torch.eager", "Eager", device="cuda", channels_last=True),
    "compile-cuda": _spec("torch.compiled", "Compiled", device="cuda"),
    "compile-max-autotune-cuda": _spec("torch.compiled", "Compiled", device="cuda", mode="max-autotune"),
    "torchscript-cuda": _spec("torch.torchscript", "TorchScript", device="cuda"),
    "pt2-cuda": _spec("torch.pt2", "ExportedProgram", device="cuda"),
    "ort-cuda": _spec("onnx.runtime", "OnnxRuntime", provider="cuda"),
    "ort-tf32-cuda": _spec("onnx.runtime", "OnnxRuntime", provider="cuda", precision="tf32"),
    "ort-tensorrt": _spec("onnx.runtime", "OnnxRuntime", provider="tensorrt"),
    "ort-tensorrt-fp16": _spec("onnx.runtime", "OnnxRuntime", provider="tensorrt", precision="fp16"),
}
# the parity reference: the spec network rebuilt from the export's tensor-only weights
REFERENCE = "eager-fp32-cpu"


def create(name: str, threads: int | None = None) -> Runner:
    if name not in RUNTIMES:
        raise SiameseError(f"unknown runtime {name!r}; known: {', '.join(RUNTIMES)}")
    return RUNTIMES[name].create(name, threads)
