"""Every runtime the harness knows, created lazily so optional dependencies load only when used.

Names read `<runtime>-<precision/variant>-<device>`; `RUNTIMES` is the single registry that
the CLI, the harness and the parametrized tests all iterate, so none drifts untested.
"""

from __future__ import annotations

import importlib

from bench.runtimes.base import Runtime

# name -> (module, class, keyword arguments)
RUNTIMES: dict[str, tuple[str, str, dict]] = {}
for _device in ("cpu", "cuda"):
    RUNTIMES |= {
        f"eager-fp32-{_device}": ("eager", "Eager", {"device": _device}),
        f"eager-bf16-{_device}": ("eager", "Eager", {"device": _device, "precision": "bf16"}),
        f"eager-fp32-channels-last-{_device}": ("eager", "Eager", {"device": _device, "channels_last": True}),
        f"compile-{_device}": ("compiled", "Compiled", {"device": _device}),
        f"torchscript-{_device}": ("torchscript", "TorchScript", {"device": _device}),
        f"pt2-{_device}": ("pt2", "ExportedProgram", {"device": _device}),
    }
RUNTIMES |= {
    "eager-fp16-cuda": ("eager", "Eager", {"device": "cuda", "precision": "fp16"}),
    "aoti-cpu": ("pt2", "AOTInductor", {"device": "cpu"}),
    "ort-cpu": ("ort", "OnnxRuntime", {"provider": "cpu"}),
    "ort-cuda": ("ort", "OnnxRuntime", {"provider": "cuda"}),
    "ort-tensorrt": ("ort", "OnnxRuntime", {"provider": "tensorrt"}),
}
REFERENCE = "eager-fp32-cpu"


def create(name: str, threads: int | None = None) -> Runtime:
    if name not in RUNTIMES:
        raise KeyError(f"unknown runtime {name!r}; known: {', '.join(RUNTIMES)}")
    module, cls, kwargs = RUNTIMES[name]
    runtime_cls = getattr(importlib.import_module(f"bench.runtimes.{module}"), cls)
    if module == "ort":
        kwargs = {**kwargs, "threads": threads}
    runtime = runtime_cls(**kwargs)
    runtime.name = name
    return runtime
