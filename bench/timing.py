"""Latency and throughput of one staged batch, with warm-up, like trtexec's summary.

CPU runtimes and ONNX Runtime are timed with perf_counter around a call that returns only
when the work is done (ORT CUDA: run_with_iobinding plus synchronize_outputs). Torch CUDA
runtimes are timed with CUDA events around each call. Host-to-device copies are excluded:
inputs are staged on the device once, before timing (the copy is timed separately).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass
class TimingConfig:
    warmup: int = 3
    warmup_seconds: float = 1.0
    iterations: int | None = None  # a fixed count, or else...
    duration: float = 3.0  # ...as many as fit in this many seconds
    min_iterations: int = 5


def measure(call, synchronize, cfg: TimingConfig, cuda_events: bool = False) -> np.ndarray:
    """Per-iteration latencies in milliseconds."""
    start = time.perf_counter()
    done = 0
    while done < cfg.warmup or time.perf_counter() - start < cfg.warmup_seconds:
        call()
        done += 1
    synchronize()
    times = []
    deadline = time.perf_counter() + cfg.duration
    while True:
        if cuda_events:
            import torch

            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            call()
            end.record()
            end.synchronize()
            times.append(begin.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            call()
            synchronize()
            times.append((time.perf_counter() - t0) * 1e3)
        n = len(times)
        if cfg.iterations is not None:
            if n >= cfg.iterations:
                break
        elif n >= cfg.min_iterations and time.perf_counter() >= deadline:
            break
    return np.array(times)


def summarize(latencies_ms: np.ndarray, batch: int, flops_per_pair: float, peak_gflops: float | None) -> dict:
    median = float(np.median(latencies_ms))
    pairs_per_s = batch / (median / 1e3)
    gflops = flops_per_pair * pairs_per_s / 1e9
    return {
        "batch": batch,
        "iterations": int(len(latencies_ms)),
        "latency_ms": {
            "min": float(latencies_ms.min()),
            "median": median,
            "p90": float(np.percentile(latencies_ms, 90)),
            "p99": float(np.percentile(latencies_ms, 99)),
            "max": float(latencies_ms.max()),
        },
        "pairs_per_s": pairs_per_s,
        "gflops": gflops,
        "peak_share": gflops / peak_gflops if peak_gflops else None,
    }


def peak_gflops(device: str = "cpu", dtype: str = "fp32", seconds: float = 1.0) -> float:
    """This machine's achievable matrix-product rate, measured now with a large GEMM."""
    import torch

    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    n = 4096 if device.startswith("cuda") else 1024  # the fastest size on the 2-core dev CPU
    a = torch.randn(n, n, device=device, dtype=torch_dtype)
    b = torch.randn(n, n, device=device, dtype=torch_dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
        if device.startswith("cuda") and count % 10:
            continue
        sync()
    sync()
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9
