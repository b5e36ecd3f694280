"""Where a figure or an artifact came from: the git commit, the library versions, the tools and
instructions of this machine."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

LIBRARIES = ("torch", "onnx", "onnxruntime", "onnxruntime-gpu", "numpy", "safetensors")


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host() -> str:
    """One line naming the machine a figure came from (the CPU model and its cores; the GPU,
    if torch sees one): the 2-core development VM sits on different hosts from day to day."""
    import torch

    described = f"{cpu_model()}, {os.cpu_count() or 1} cores"
    if torch.cuda.is_available():
        described += f", {torch.cuda.get_device_name(0)}"
    return described


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str | None]:
    return {d: version(d) for d in LIBRARIES}


def cxx_compiler() -> str | None:
    """The C++ compiler Inductor (CPU kernels, AOTInductor) would build with, if any."""
    return shutil.which("c++") or shutil.which("g++")


def native_bf16(device) -> bool:
    """Whether `device` computes bf16 in hardware: a CUDA GPU that supports it, or a CPU with
    AVX-512 bf16 or AMX, where oneDNN has bf16 kernels (elsewhere torch emulates bf16, and a
    bf16 GEMM on an AVX2 CPU measured 0.84 GFLOP/s). `device`: a torch.device."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def missing_module(module: str, hint: str) -> str | None:
    """Why an optional dependency cannot be imported (with how to get it), or None."""
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else f"{module} is not installed ({hint})"
