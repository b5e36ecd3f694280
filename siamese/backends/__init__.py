"""Every runtime an export can run in, under one set of names used by every tool.

Names read `<runtime>[-<precision>]-<device>`. `RUNTIMES` is the single registry that
`siamese-verify --runtime`, `siamese-bench --runtimes`, the export check and the
parametrized tests all iterate; modules are imported only when a runner is created, so
optional dependencies load only when used.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from siamese.backends.base import Abilities, Runner
from siamese.core.errors import SiameseError

__all__ = ["RUNTIMES", "FORMAT_RUNNERS", "REFERENCE", "Abilities", "Runner", "RunnerSpec", "create"]


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
    "eager-fp32-cpu": _spec("eager", "Eager"),
    "eager-bf16-cpu": _spec("eager", "Eager", precision="bf16"),
    "eager-fp32-channels-last-cpu": _spec("eager", "Eager", channels_last=True),
    "compile-cpu": _spec("compiled", "Compiled"),
    "torchscript-cpu": _spec("torchscript", "TorchScript"),
    "pt2-cpu": _spec("pt2", "ExportedProgram"),
    "aoti-cpu": _spec("pt2", "AOTInductor"),
    "ort-cpu": _spec("ort", "OnnxRuntime"),
    "openvino-cpu": _spec("openvino", "OpenVino"),
    "openvino-bf16-cpu": _spec("openvino", "OpenVino", precision="bf16"),
    "openvino-ir-cpu": _spec("openvino", "OpenVino", artifact="openvino"),
    "eager-fp32-cuda": _spec("eager", "Eager", device="cuda"),
    "eager-tf32-cuda": _spec("eager", "Eager", device="cuda", precision="tf32"),
    "eager-bf16-cuda": _spec("eager", "Eager", device="cuda", precision="bf16"),
    "eager-fp16-cuda": _spec("eager", "Eager", device="cuda", precision="fp16"),
    "eager-fp32-channels-last-cuda": _spec("eager", "Eager", device="cuda", channels_last=True),
    "compile-cuda": _spec("compiled", "Compiled", device="cuda"),
    "compile-max-autotune-cuda": _spec("compiled", "Compiled", device="cuda", mode="max-autotune"),
    "torchscript-cuda": _spec("torchscript", "TorchScript", device="cuda"),
    "pt2-cuda": _spec("pt2", "ExportedProgram", device="cuda"),
    "ort-cuda": _spec("ort", "OnnxRuntime", provider="cuda"),
    "ort-tf32-cuda": _spec("ort", "OnnxRuntime", provider="cuda", precision="tf32"),
    "ort-tensorrt": _spec("ort", "OnnxRuntime", provider="tensorrt"),
    "ort-tensorrt-fp16": _spec("ort", "OnnxRuntime", provider="tensorrt", precision="fp16"),
}
# the runner that reads each export format back when an export is checked
FORMAT_RUNNERS = {
    "onnx": "ort-cpu",
    "torchscript": "torchscript-cpu",
    "pt2": "pt2-cpu",
    "aoti": "aoti-cpu",
    "openvino": "openvino-ir-cpu",
}
# the parity reference: the spec network rebuilt from the export's tensor-only weights
REFERENCE = "eager-fp32-cpu"


def create(name: str, threads: int | None = None) -> Runner:
    if name not in RUNTIMES:
        raise SiameseError(f"unknown runtime {name!r}; known: {', '.join(RUNTIMES)}")
    return RUNTIMES[name].create(name, threads)
