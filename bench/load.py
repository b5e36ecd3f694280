"""Served throughput under concurrent clients, measured on the client side as perf_analyzer does.

`concurrency` threads each open their own connection (in that thread: tritonclient's HTTP
client is bound to the thread that made it) and send one request of `batch` pairs after
another for `duration` seconds; pairs/s counts the answered pairs over the wall time, and
the latency percentiles are those of every request.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from bench.result import LoadResult


def served_load(runner, a: np.ndarray, b: np.ndarray, concurrency: int, duration: float) -> LoadResult:
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[BaseException] = []
    window: dict[str, float] = {}
    # the last to arrive (every client warm, and this thread) sets the clock for all
    ready = threading.Barrier(concurrency + 1, action=lambda: window.update(start=time.perf_counter()))

    def client(out: list[float]) -> None:
        try:
            call = runner.timed_call(a, b)
            call()  # connected, and the server warm, before the clock starts
        except Exception as exc:
            errors.append(exc)
            ready.abort()
            return
        try:
            ready.wait()
        except threading.BrokenBarrierError:  # another client could not start: it reports why
            return
        try:
            while time.perf_counter() < window["start"] + duration:
                t0 = time.perf_counter()
                call()
                out.append((time.perf_counter() - t0) * 1e3)
        except Exception as exc:  # a refused or timed-out request fails the whole measurement
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(out,), daemon=True) for out in latencies]
    for thread in threads:
        thread.start()
    try:
        ready.wait()  # every client connected and warm: the clock starts for all at once
    except threading.BrokenBarrierError:
        pass
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - window.get("start", 0.0)
    if errors:
        raise errors[0]
    every = np.concatenate([np.asarray(x) for x in latencies])
    return LoadResult(
        concurrency=concurrency,
        batch=len(a),
        requests=int(len(every)),
        pairs_per_s=len(every) * len(a) / wall,
        latency_ms={q: float(np.percentile(every, p)) for q, p in (("p50", 50), ("p90", 90), ("p99", 99))}
        | {"max": float(every.max())},
    )
