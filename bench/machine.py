"""What the figures were measured on: CPU, cores, GPU, driver, library versions, git commit."""

from __future__ import annotations

import os
import platform
import subprocess
import time

from bench.result import Machine, Peak
from siamese.core.provenance import cpu_model, git_commit, library_versions


def _cpu_flags_and_clock() -> tuple[str, set[str], float | None]:
    """The CPU's vendor, its instruction-set flags and its highest reported clock in MHz (None
    where the CPU reports none, as some VMs do)."""
    vendor, flags, mhz = "", set(), []
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "vendor_id":
                vendor = value.strip()
            elif key == "flags":
                flags = set(value.split())
            elif key == "cpu MHz":
                mhz.append(float(value))
    except (OSError, ValueError):
        pass
    try:
        mhz.append(int(open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read()) / 1000)
    except (OSError, ValueError):
        pass
    return vendor, flags, max(mhz) if mhz else None


def cpu_flops_per_cycle(vendor: str, flags: set[str], precision: str) -> tuple[int, str] | None:
    """FLOPs one core can issue per cycle in `precision`, and the assumption behind the number:
    two FMA pipes (each FMA 2 FLOPs) of the widest vector unit, as roofline tools assume."""
    if "avx512f" in flags:
        lanes, unit = (8, "AVX-512 on 256-bit pipes (AMD)") if vendor == "AuthenticAMD" else (16, "AVX-512")
    elif "avx2" in flags and "fma" in flags:
        lanes, unit = 8, "AVX2"
    else:
        return None
    fp32 = 2 * 2 * lanes
    if precision == "fp32":
        return fp32, f"{unit} fp32: 2 FMA pipes x {lanes} lanes x 2"
    if precision == "bf16" and "amx_bf16" in flags:
        return 1024, "AMX bf16: 1,024 FLOPs per cycle per core"
    if precision == "bf16" and "avx512_bf16" in flags:
        return 2 * fp32, f"{unit} bf16 dot products: twice the fp32 rate"
    if precision == "int8" and "amx_int8" in flags:
        return 2048, "AMX int8: 2,048 ops per cycle per core"
    if precision == "int8" and ("avx512_vnni" in flags or "avx_vnni" in flags):
        return 4 * fp32, f"{unit} VNNI int8 dot products: 4x the fp32 rate"
    return None


def hardware_peak(device: str, precision: str) -> Peak | None:
    """The machine's limit for `precision` on `device`: cores x FLOPs per cycle x clock, from what
    the CPU reports (None where it reports no clock or the precision has no known rate, and for
    GPUs, whose limit this toolkit does not tabulate)."""
    if device != "cpu":
        return None
    vendor, flags, mhz = _cpu_flags_and_clock()
    per_cycle = cpu_flops_per_cycle(vendor, flags, precision)
    if per_cycle is None or mhz is None:
        return None
    cores = os.cpu_count() or 1
    flops, assumption = per_cycle
    return Peak(cores * flops * mhz / 1e3, f"{cores} logical CPUs x {assumption} x {mhz:.0f} MHz (reported clock)")


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
        cpu=cpu_model(),
        cores=os.cpu_count() or 1,
        torch_threads=threads or torch.get_num_threads(),
        gpu=_gpu(),
        platform=platform.platform(),
        python=platform.python_version(),
        versions=library_versions(),
        git_commit=git_commit(),
    )


def _busy_cpu_seconds() -> float:
    """CPU seconds every process spent busy since boot, the hypervisor's other guests (steal) included."""
    import psutil

    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    counted_twice = getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)  # Linux folds them into user
    return sum(t) - idle - counted_twice


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class OthersLoad:
    """The share of the machine's CPUs that other processes, and on a VM other guests, took while
    the block ran: 0 on a quiet machine, 0.5 when another process holds one core of two. Timings
    taken beside such a load say little about the code (bench.report.regressions)."""

    share: float | None = None

    def __enter__(self) -> OthersLoad:
        self._start = (_busy_cpu_seconds(), _own_cpu_seconds(), time.perf_counter())
        return self

    def __exit__(self, *exc) -> None:
        busy0, own0, wall0 = self._start
        busy, own, wall = _busy_cpu_seconds() - busy0, _own_cpu_seconds() - own0, time.perf_counter() - wall0
        self.share = max(0.0, busy - own) / (wall * (os.cpu_count() or 1)) if wall > 0 else None
