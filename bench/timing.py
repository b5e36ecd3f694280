"""Latency and throughput of one batch, with warm-up and repeats, like trtexec's summary.

Runtimes whose calls return when the work is done are timed with perf_counter (ONNX Runtime
CUDA: run_with_iobinding plus synchronize_outputs); torch CUDA runtimes with CUDA events.
The timed calls are split into repeats; the spread of the repeats' medians shows the run's
noise (`--compare` times a suspected regression again rather than trusting one pass).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import click
import numpy as np

from bench.result import Peak, TimingResult
from siamese.core.params import FiniteFloat, option


@dataclass
class TimingConfig:
    warmup: int = option(3, "warm-up iterations (at least)", click.IntRange(0, 1_000_000))
    warmup_seconds: float = option(1.0, "warm-up duration (at least)", FiniteFloat(0, 3600))
    # a fixed count per repeat, or else as many as fit in `duration` seconds, over all repeats
    iterations: int | None = option(None, "timed iterations per repeat", click.IntRange(1, 10_000_000))
    duration: float = option(3.0, "seconds of timed calls per runtime and batch", FiniteFloat(0, 3600))
    repeats: int = option(3, "timing repeats; their spread is the noise", click.IntRange(1, 1000))
    min_iterations: int = 3  # per repeat


def _timed(call, synchronize, cuda_events: bool) -> float:
    if cuda_events:
        import torch

        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        call()
        end.record()
        end.synchronize()
        return begin.elapsed_time(end)
    t0 = time.perf_counter()
    call()
    synchronize()
    return (time.perf_counter() - t0) * 1e3


def measure(call, synchronize, cfg: TimingConfig, cuda_events: bool = False) -> tuple[float, list[np.ndarray]]:
    """The first call's wall time in ms (compilation, engine builds), then per-repeat latencies in ms."""
    t0 = time.perf_counter()
    call()
    synchronize()
    first_ms = (time.perf_counter() - t0) * 1e3
    done, start = 1, time.perf_counter()
    while done < cfg.warmup or time.perf_counter() - start < cfg.warmup_seconds:
        call()
        done += 1
    synchronize()
    repeats = []
    for _ in range(cfg.repeats):
        times = []
        deadline = time.perf_counter() + cfg.duration / cfg.repeats
        while True:
            times.append(_timed(call, synchronize, cuda_events))
            if cfg.iterations is not None:
                if len(times) >= cfg.iterations:
                    break
            elif len(times) >= cfg.min_iterations and time.perf_counter() >= deadline:
                break
        repeats.append(np.array(times))
    return first_ms, repeats


def summarize(
    first_ms: float, repeats: list[np.ndarray], batch: int, flops_per_pair: float, peak: Peak | None
) -> TimingResult:
    latencies = np.concatenate(repeats)
    median = float(np.median(latencies))
    medians = [float(np.median(r)) for r in repeats]
    pairs_per_s = batch / (median / 1e3)
    gflops = flops_per_pair * pairs_per_s / 1e9
    return TimingResult(
        batch=batch,
        iterations=int(len(latencies)),
        latency_ms={
            "min": float(latencies.min()),
            "median": median,
            "p90": float(np.percentile(latencies, 90)),
            "p99": float(np.percentile(latencies, 99)),
            "max": float(latencies.max()),
        },
        spread=(max(medians) - min(medians)) / median,
        pairs_per_s=pairs_per_s,
        gflops=gflops,
        peak_share=gflops / peak.gflops if peak else None,
        first_call_ms=first_ms,
    )


def peak_gflops(device: str = "cpu", precision: str = "fp32", seconds: float = 1.0) -> Peak:
    """This machine's matrix-product rate, measured now: the best of a few large GEMMs in the
    same dtype and CUDA math mode (TF32 or not) as the runtimes it is compared with."""
    import torch

    from siamese.backends.torch.runner import cuda_math

    dtype = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    cuda = device.startswith("cuda")
    sizes = (4096, 8192) if cuda else (1024, 2048)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    best, best_n = 0.0, 0
    with cuda_math(allow_tf32=precision == "tf32"):
        for n in sizes:
            a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
            a @ b
            sync()
            for _ in range(3):  # best of three short runs: the shared VM's noise only slows a run down
                count, start = 0, time.perf_counter()
                while time.perf_counter() - start < seconds / (3 * len(sizes)):
                    a @ b
                    count += 1
                sync()
                rate = 2 * n**3 * count / (time.perf_counter() - start) / 1e9
                if rate > best:
                    best, best_n = rate, n
    math = {"fp32": "fp32, TF32 off", "tf32": "fp32 with TF32"}.get(precision, precision) if cuda else precision
    return Peak(best, f"torch GEMM {math} on {device} (best of n={'/'.join(map(str, sizes))}: n={best_n})")
