"""Run parity and timing for every requested runtime on one export; return one result dict.

The result (schema `siamese-bench/1`) holds the machine, the export, the settings, the
measured peaks, and per runtime: availability (with the reason when not), parity and timing.
"""

from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.machine import machine_info
from bench.parity import check_parity, load_reference, parity_inputs, run_outputs, save_reference
from bench.runtimes import REFERENCE, RUNTIMES, create
from bench.timing import TimingConfig, measure, peak_gflops, summarize
from siamese.artifacts import ExportFolder
from siamese.errors import SiameseError
from siamese.model import flops_per_image

SCHEMA = "siamese-bench/1"


@dataclass
class BenchConfig:
    export: Path | None = None
    runtimes: list[str] | None = None  # None: every registered runtime
    batches: list[int] = field(default_factory=lambda: [64])
    timing: TimingConfig = field(default_factory=TimingConfig)
    threads: int | None = None
    flush_denormal: bool = False  # CPU: treat denormal floats as zero in PyTorch (see README)
    pairs: Path | None = None  # labelled pair file for parity; default the LFW test split
    parity_pairs: int = 64
    random_pairs: int = 16
    tolerances: dict[str, float] = field(default_factory=dict)  # output -> rtol override
    save_inputs: Path | None = None
    load_reference: Path | None = None
    timing_enabled: bool = True
    exports_root: Path = Path("exports")
    runs_root: Path = Path("runs")


def resolve_export(cfg: BenchConfig, log=print) -> tuple[ExportFolder, str]:
    """The export to benchmark and how its weights were obtained.

    Given, or the newest under exports/, or the newest checkpoint exported now, or (clearly
    labelled) an untrained network exported now.
    """
    from siamese.verify import newest_export

    if cfg.export:
        return ExportFolder.open(cfg.export), "given export"
    try:
        return ExportFolder.open(newest_export(cfg.exports_root)), "newest export"
    except SiameseError:
        pass
    from siamese.export import export_checkpoint, newest_checkpoints

    checkpoints = newest_checkpoints(cfg.runs_root)
    if checkpoints:
        path = next(iter(checkpoints.values()))
        log(f"no export found: exporting the newest checkpoint {path}")
        dest, _ = export_checkpoint(path, cfg.exports_root, formats=("onnx", "torchscript", "pt2"), log=log)
        return ExportFolder.open(dest), "newest checkpoint, exported now"
    from siamese.train import untrained_checkpoint

    log("NO EXPORT AND NO CHECKPOINT: benchmarking an UNTRAINED network (random weights)")
    ckpt = untrained_checkpoint(cfg.runs_root / "untrained" / "contrastive" / "checkpoint.pt", "contrastive")
    dest, _ = export_checkpoint(
        ckpt,
        cfg.exports_root,
        "untrained-contrastive-fp32",
        formats=("onnx", "torchscript", "pt2"),
        force=True,
        log=log,
    )
    return ExportFolder.open(dest), "UNTRAINED random weights"


def _staged_batch(inputs, batch: int) -> tuple[np.ndarray, np.ndarray]:
    reps = -(-batch // len(inputs.labels))
    return np.tile(inputs.image_a, (reps, 1, 1, 1))[:batch], np.tile(inputs.image_b, (reps, 1, 1, 1))[:batch]


def bench_runtime(runtime, export, inputs, reference, cfg: BenchConfig, flops: float, peaks: dict, bar=None) -> dict:
    entry = {**runtime.describe(), "available": False}
    reason = runtime.unavailable()
    if reason is not None:
        return entry | {"reason": reason}
    try:
        runtime.load(export)
    except Exception as exc:  # a runtime that cannot load here is unavailable, never a crash
        return entry | {"reason": f"load failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    entry = {**runtime.describe(), "available": True}
    try:
        entry["parity"] = check_parity(
            run_outputs(runtime, inputs),
            reference,
            inputs.labels,
            runtime.precision,
            float(export.metadata["threshold"]),
            cfg.tolerances,
        )
    except Exception as exc:  # a runtime that crashes on valid input fails parity
        entry["parity"] = {"passed": False, "error": f"{type(exc).__name__}: {exc}"}
    entry["timing"] = []
    if cfg.timing_enabled and "error" not in entry["parity"]:
        key = f"{runtime.device.split(':')[0]}-{runtime.precision}"
        if key not in peaks:
            peaks[key] = peak_gflops(runtime.device, runtime.precision)
        for batch in cfg.batches:
            if bar is not None:
                bar.set_postfix_str(f"{runtime.name} batch {batch}")
            a, b = _staged_batch(inputs, batch)
            call = runtime.timed_call(a, b)
            cuda_events = runtime.device.startswith("cuda") and not runtime.name.startswith("ort")
            latencies = measure(call, runtime.synchronize, cfg.timing, cuda_events)
            entry["timing"].append(summarize(latencies, batch, flops, peaks[key]))
            if bar is not None:
                bar.update(1)
    runtime.close()
    gc.collect()
    return entry


def run_benchmark(cfg: BenchConfig, log=print) -> dict:
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.set_flush_denormal(cfg.flush_denormal)
    names = cfg.runtimes or list(RUNTIMES)
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown:
        raise SiameseError(f"unknown runtime(s) {', '.join(unknown)}; known: {', '.join(RUNTIMES)}")
    export, weights = resolve_export(cfg, log)
    started = time.time()
    if cfg.load_reference:
        inputs, reference = load_reference(cfg.load_reference)
        reference_from = f"loaded from {cfg.load_reference}"
    else:
        inputs = parity_inputs(export, cfg.pairs, cfg.parity_pairs, cfg.random_pairs)
        ref_runtime = create(REFERENCE, cfg.threads)
        ref_runtime.load(export)
        reference = run_outputs(ref_runtime, inputs)
        ref_runtime.close()
        reference_from = f"{REFERENCE} on this machine"
    if cfg.save_inputs:
        save_reference(cfg.save_inputs, inputs, reference)
    flops = 2 * flops_per_image(export.image_size)
    peaks: dict[str, float] = {}
    results = []
    runtimes = [create(n, cfg.threads) for n in names]
    steps = sum(len(cfg.batches) for r in runtimes if r.unavailable() is None) if cfg.timing_enabled else 0
    with tqdm(total=steps, desc="siamese-bench", unit="run", disable=None) as bar:
        for runtime in runtimes:
            results.append(bench_runtime(runtime, export, inputs, reference, cfg, flops, peaks, bar))
    available = [r for r in results if r["available"]]
    settings = asdict(cfg)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in settings.items()}
    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "machine": machine_info(cfg.threads),
        "export": {
            "path": str(export.path),
            "weights": weights,
            "variant": export.metadata["variant"],
            "image_size": export.image_size,
            "threshold": export.metadata["threshold"],
            "training": export.metadata.get("training"),
            "formats": export.formats(),
        },
        "flops_per_pair": flops,
        "parity_inputs": {
            "source": inputs.source,
            "pairs": int(len(inputs.labels)),
            "reference": reference_from,
        },
        "settings": settings,
        "peak_gflops": peaks,
        "runtimes": results,
        "passed": bool(available) and all(r["parity"]["passed"] for r in available),
    }
