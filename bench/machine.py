"""What the figures were measured on: CPU, cores, GPU, driver, library versions, git commit."""

from __future__ import annotations

import os
import platform
import subprocess

from bench.result import Machine
from siamese.core.provenance import git_commit, library_versions


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu() -> dict | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    driver = None
    try:
        driver = (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "name": props.name,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "driver": driver,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


def machine_info(threads: int | None = None) -> Machine:
    import torch

    return Machine(
        cpu=_cpu_model(),
        cores=os.cpu_count() or 1,
        torch_threads=threads or torch.get_num_threads(),
        gpu=_gpu(),
        platform=platform.platform(),
        python=platform.python_version(),
        versions=library_versions(),
        git_commit=git_commit(),
    )
