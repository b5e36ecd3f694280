"""Where a figure or an artifact came from: the git commit, the library versions, the tools and
instructions of this machine."""

from __future__ import annotations

import shutil
import subprocess
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
