"""Run parity and timing for every requested runtime on one export; return one BenchResult.

Each runtime ends `ok`, `failed` (with the error: a bug, a crash or a numerical failure) or
`unavailable` (with the reason: a missing package, device or artifact). Loading, parity and
timing run inside one guard and `close()` always runs, so one runtime that raises (CUDA out
of memory, say) is reported and the others still run; runtimes that state `isolate` (or
all, with `--isolate`) run in a child process, so even a segfaulting provider is reported.
The harness acts only on what a runner states about itself, never on its name.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import signal
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from bench.load import served_load
from bench.machine import OthersLoad, hardware_peak, machine_info
from bench.params import NameList, tolerances
from bench.report import Regression, best_of, header, incomparable, regressions, table, write_report
from bench.result import BenchedExport, BenchResult, Peak, RuntimeResult, arithmetic_key
from bench.timing import TimingConfig, measure, peak_gflops, summarize
from siamese.artifacts.checkpoint import untrained_checkpoint
from siamese.artifacts.folder import ExportFolder, ExportPolicy, default_export
from siamese.backends import REFERENCE, RUNTIMES, RunnerSpec
from siamese.backends.triton.client import TritonClient
from siamese.core.errors import SiameseError, die_with_parent, first_line
from siamese.core.files import check_writable, read_limited, write_json
from siamese.core.model import flops_per_image
from siamese.core.params import FiniteFloat, IntList, OutputFile, Threads, option
from siamese.data.lfw import default_pairs
from siamese.parity.inputs import (
    BATCH,
    ParityInputs,
    check_runner,
    load_reference,
    parity_inputs,
    run_outputs,
    save_reference,
)

# the reference, in order of preference: the spec network from tensor-only weights, else ONNX Runtime fp32
REFERENCES = (REFERENCE, "ort-cpu")
PATH = click.Path(path_type=Path)


@dataclass
class BenchConfig:
    """One benchmark run; its fields with a help are siamese-bench's options."""

    export: Path | None = option(
        None, "export folder; default the newest under exports/, else the newest checkpoint exported now", PATH
    )
    runtimes: list[str] | None = option(
        None, f"comma-separated subset of: {', '.join(RUNTIMES)}", NameList(), show_default="all"
    )
    batches: list[int] = option(
        help="comma-separated batch sizes (pairs), e.g. 1,8,64", type=IntList(), flag="--batch", factory=lambda: [64]
    )
    timing: TimingConfig = field(default_factory=TimingConfig)
    threads: int | None = option(None, "CPU threads (torch and ONNX Runtime)", Threads)
    flush_denormal: bool = option(False, "PyTorch CPU: flush denormal floats to zero (see README)")
    pairs: Path | None = option(
        None,
        "labelled pair file for parity; default the LFW test split of $SIAMESE_LFW or the cache",
        click.Path(path_type=Path, exists=True, dir_okay=False),
    )
    parity_pairs: int = option(64, "labelled pairs parity runs on", click.IntRange(0, 100_000))
    random_pairs: int = option(16, "seeded random pairs parity runs on", click.IntRange(0, 100_000))
    tolerances: dict[str, float] = option(
        help="override the precision's tolerance: atol=, rtol= or accuracy_delta= (repeatable)",
        flag="--tolerance",
        factory=dict,
        multiple=True,
        callback=tolerances,
        default=(),
        show_default=False,
    )
    save_inputs: Path | None = option(
        None, "write inputs and reference outputs: FILE.npz and Polygraphy JSON beside it", OutputFile(".npz")
    )
    load_reference: Path | None = option(None, "a --save-inputs .npz", click.Path(path_type=Path, exists=True))
    timing_enabled: bool = option(True, "time the runtimes (--no-timing: parity only)", flag="--timing/--no-timing")
    isolate: bool = option(False, "run every runtime in its own child process")
    command: str = ""  # the command line, as the report shows it (set by siamese-bench)
    untrained: bool = option(
        False, "without --export: export and benchmark a network of random weights (timing only; said everywhere)"
    )
    exports_root: Path = Path("exports")
    runs_root: Path = Path("runs")
    json_path: Path | None = option(None, "write the result as JSON", OutputFile(".json"), flag="--json")
    report_dir: Path | None = option(
        None, "write report.md and bench.png here", click.Path(path_type=Path, file_okay=False), flag="--report"
    )
    baseline: Path | None = option(
        None,
        "a --json of an earlier run: exit non-zero on a regression that holds when timed again",
        click.Path(path_type=Path, exists=True, dir_okay=False),
        flag="--compare",
    )
    regression_threshold: float = option(0.10, "allowed median growth", FiniteFloat(min=0))
    policy: ExportPolicy = field(default_factory=ExportPolicy)  # may code-carrying artifacts load; signing key
    triton: str | None = option(
        None,
        "a Triton server (siamese-serve) at http://HOST:PORT or grpc://HOST:PORT, benchmarked beside the runtimes",
        metavar="URL",
    )
    concurrency: list[int] = option(
        help="served runtimes: concurrent clients, e.g. 1,4,16", type=IntList(1024), factory=lambda: [1]
    )


def resolve_export(cfg: BenchConfig, log=print) -> tuple[ExportFolder, str]:
    """The export to benchmark and how its weights were obtained: the one given, else the
    default export (siamese.artifacts.folder.default_export), else an error naming the commands
    to run; an untrained network only when asked for (`--untrained`), and labelled so."""
    from siamese.tasks.export import export_checkpoint

    if cfg.export:
        return ExportFolder.open(cfg.export, cfg.policy), "given export"
    if not cfg.untrained:
        return ExportFolder.open(default_export(cfg.exports_root), cfg.policy), "default export"
    log("--untrained: benchmarking an UNTRAINED network (random weights): timing only, its answers mean nothing")
    ckpt = untrained_checkpoint(cfg.runs_root / "untrained" / "contrastive" / "checkpoint.pt", "contrastive")
    dest, _ = export_checkpoint(
        ckpt,
        cfg.exports_root,
        "untrained-contrastive-fp32",
        formats=("onnx", "torchscript", "pt2"),
        force=True,
        log=log,
        key=cfg.policy.key,
        untrained=True,
    )
    # what this process has just exported from a weights-only checkpoint
    return ExportFolder.open(dest, ExportPolicy(trust_code=True, key=cfg.policy.key)), "UNTRAINED random weights"


def _tiled(inputs: ParityInputs, batch: int) -> tuple[np.ndarray, np.ndarray]:
    reps = -(-batch // len(inputs.labels))
    return np.tile(inputs.image_a, (reps, 1, 1, 1))[:batch], np.tile(inputs.image_b, (reps, 1, 1, 1))[:batch]


def time_batch(runner, inputs: ParityInputs, batch: int, cfg: BenchConfig, flops: float, peak: Peak | None):
    a, b = _tiled(inputs, batch)
    cuda_events = runner.abilities.timed_with == "CUDA events"
    runner.reset_peak_memory()
    with OthersLoad() as others:
        first_ms, repeats = measure(runner.timed_call(a, b), runner.synchronize, cfg.timing, cuda_events)
    result = summarize(first_ms, repeats, batch, flops, peak)
    result.others_load = None if runner.abilities.served else others.share
    memory = runner.peak_memory()
    result.peak_memory_mb = None if memory is None else memory / 2**20
    if runner.abilities.device != "cpu":  # a client's inputs start on the host: time the copy too
        _, with_copy = measure(runner.timed_call(a, b, from_host=True), runner.synchronize, cfg.timing)
        result.with_copy_ms = float(np.median(np.concatenate(with_copy)))
    return result


def bench_runtime(runner, export, inputs, reference, cfg: BenchConfig, peak: Peak | None, flops: float, bar=None):
    """One runtime from load to close, every step inside one guard."""
    result = RuntimeResult(runner.name, "ok", runner.describe())
    try:
        reason = runner.unavailable(export)
    except Exception as exc:  # checking must not raise: if it does, that is a bug of the runner
        return result.fail(f"availability check raised {first_line(exc, with_type=True)}")
    if reason:
        result.status, result.reason = "unavailable", reason
        return result
    try:
        runner.load(export, ("embedding", "pair"), sorted({*cfg.batches, BATCH}))
        result.abilities = runner.describe()
        meta = export.metadata
        result.parity = check_runner(
            runner,
            inputs,
            reference,
            meta.threshold,
            meta.dtype,
            cfg.tolerances,
            score_is_distance=not meta.higher_is_same,
        )
        if not result.parity.passed:
            result.fail("parity: " + "; ".join(result.parity.failures()))
        if cfg.timing_enabled:
            for batch in cfg.batches:
                if bar is not None:
                    bar.set_postfix_str(f"{runner.name} batch {batch}")
                result.timing.append(time_batch(runner, inputs, batch, cfg, flops, peak))
                if bar is not None:
                    bar.update(1)
            if runner.abilities.served:
                for batch in cfg.batches:
                    a, b = _tiled(inputs, batch)
                    seconds = cfg.timing.duration
                    result.load += [served_load(runner, a, b, clients, seconds) for clients in cfg.concurrency]
    except Exception as exc:  # a bug, an out-of-memory, a provider error: this runtime failed, the others go on
        result.fail(first_line(exc, with_type=True))
    finally:
        try:
            runner.close()
        except Exception as exc:
            result.fail(f"{result.error + '; ' if result.error else ''}close raised {first_line(exc, with_type=True)}")
        gc.collect()
    return result


def _child(conn) -> None:
    # The work comes over the pipe, not as spawn arguments: spawn's own bootstrap then stays small
    # enough for the pipe's buffer, so a parent stopped at any moment never leaves it half-read
    # (a child traceback), and each way the parent can vanish below ends the child quietly.
    die_with_parent(multiprocessing.parent_process().pid)  # a benchmark whose parent is gone only burns the machine
    try:
        name, spec, export_path, policy, inputs, reference, cfg, peak, flops = conn.recv()
    except EOFError:  # the parent died while it sent the work
        raise SystemExit(128 + signal.SIGTERM) from None
    runner = spec.create(name, cfg.threads)
    result = bench_runtime(runner, ExportFolder.open(export_path, policy), inputs, reference, cfg, peak, flops)
    try:
        conn.send(result.to_dict())
    except BrokenPipeError:  # the parent died while this child benchmarked
        raise SystemExit(128 + signal.SIGTERM) from None
    conn.close()


def bench_isolated(name: str, spec: RunnerSpec, export, inputs, reference, cfg, peak, flops) -> RuntimeResult:
    """bench_runtime in a child process: a crash there (a segfault, an abort) is this runtime's failure."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=_child, args=(theirs,), daemon=True)
    child.start()
    theirs.close()
    try:
        ours.send((name, spec, str(export.path), export.policy, inputs, reference, cfg, peak, flops))
        data = ours.recv()
    except (EOFError, BrokenPipeError):  # the child died before it could answer
        data = None
    child.join()
    if data is not None:
        return RuntimeResult.from_dict(data)
    code = child.exitcode
    how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
    return RuntimeResult(name, "failed", {"name": name, "isolate": True}, error=f"crashed in its child process ({how})")


def make_reference(export: ExportFolder, inputs: ParityInputs, threads) -> tuple[dict, str]:
    """Reference outputs from a runner that loads no code: the first of REFERENCES that can run."""
    reasons = []
    for name in REFERENCES:
        runner = RUNTIMES[name].create(name, threads)
        reason = runner.unavailable(export)
        if not reason and runner.abilities.artifact != "weights" and export.metadata.dtype != "fp32":
            reason = f"its {runner.abilities.artifact} graphs are {export.metadata.dtype}, not fp32"
        if reason:
            reasons.append(f"{name}: {reason}")
            continue
        try:
            runner.load(export, ("embedding", "pair"))
            return run_outputs(runner, inputs), f"{name} ({runner.abilities.artifact} of the export)"
        finally:
            runner.close()
    raise SiameseError(f"{export.path}: no reference runtime can run it ({'; '.join(reasons)}); re-export it")


def run_benchmark(cfg: BenchConfig, log=print, specs: dict[str, RunnerSpec] | None = None) -> BenchResult:
    import torch

    specs = specs or RUNTIMES
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.set_flush_denormal(cfg.flush_denormal)
    names = cfg.runtimes or list(specs)
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise SiameseError(f"unknown runtime(s) {', '.join(unknown)}; known: {', '.join(specs)}")
    export, weights = resolve_export(cfg, log)
    started = time.time()
    if cfg.load_reference:
        inputs, reference = load_reference(cfg.load_reference)
        reference_from = f"loaded from {cfg.load_reference}"
    else:
        inputs = parity_inputs(
            export.image_size,
            cfg.pairs or default_pairs("test"),
            cfg.parity_pairs,
            cfg.random_pairs,
            crop=export.metadata.framing.crop,
        )
        reference, reference_from = make_reference(export, inputs, cfg.threads)
    if cfg.save_inputs:
        written = save_reference(cfg.save_inputs, inputs, reference)
        log(f"parity inputs and reference outputs: {', '.join(map(str, written))}")
    flops = 2 * flops_per_image(export.image_size)
    runners = {n: specs[n].create(n, cfg.threads) for n in names}
    if cfg.triton:
        served = TritonClient(cfg.triton)
        runners[served.name] = served
    runnable = {n for n, r in runners.items() if not _safe_unavailable(r, export)}
    peaks: dict[str, Peak] = {}
    hardware: dict[str, Peak] = {}
    if cfg.timing_enabled:
        for key in sorted(
            {f"{r.abilities.device}-{r.abilities.precision}" for n, r in runners.items() if n in runnable}
        ):
            device, precision = key.split("-")
            peaks[key] = peak_gflops(device, precision)
        for key in sorted(
            {
                arithmetic_key(r.abilities.device, r.abilities.precision, export.metadata.dtype, r.abilities.artifact)
                for n, r in runners.items()
                if n in runnable
            }
        ):
            if limit := hardware_peak(*key.split("-")):
                hardware[key] = limit
    result = BenchResult(
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        machine=machine_info(cfg.threads),
        export=BenchedExport(
            path=str(export.path),
            weights=weights if export.metadata.training.trained else f"UNTRAINED random weights ({weights})",
            variant=export.metadata.name,
            dtype=export.metadata.dtype,
            image_size=export.image_size,
            threshold=export.metadata.threshold,
            training=export.metadata.training.to_dict(),
            formats=export.formats(),
            signature="verified" if export.key else "not checked",
            manifest_sha256=export.manifest_sha256,
        ),
        flops_per_pair=flops,
        parity_inputs=inputs.source,
        reference=reference_from,
        settings=json.loads(json.dumps({**asdict(cfg), "policy": cfg.policy.describe()}, default=str)),
        peaks=peaks,
        hardware_peaks=hardware,
        command=cfg.command,
    )
    steps = len(cfg.batches) * len(runnable) if cfg.timing_enabled else 0
    with tqdm(total=steps, desc="siamese-bench", unit="run", disable=None) as bar:
        for name, runner in runners.items():
            peak = peaks.get(f"{runner.abilities.device}-{runner.abilities.precision}")
            if name in runnable and name in specs and (cfg.isolate or runner.abilities.isolate):
                entry = bench_isolated(name, specs[name], export, inputs, reference, cfg, peak, flops)
                bar.update(len(cfg.batches) if cfg.timing_enabled else 0)
            else:
                entry = bench_runtime(runner, export, inputs, reference, cfg, peak, flops, bar)
            log(f"{name}: {entry.status}" + (f" ({entry.error or entry.reason})" if entry.status != "ok" else ""))
            result.runtimes.append(entry)
    return result


def _safe_unavailable(runner, export) -> str | None:
    try:
        return runner.unavailable(export)
    except Exception as exc:
        return first_line(exc, with_type=True)


def confirmed_regressions(cfg: BenchConfig, result: BenchResult, baseline: BenchResult, log=print) -> list[Regression]:
    """The regressions of `result` against `baseline` that hold when timed again: each suspect
    is timed a second time (that runtime, those batch sizes) and judged on the faster of the two
    passes, since a neighbour can slow one pass for seconds. `result` keeps the faster figures."""
    suspects = regressions(result, baseline, cfg.regression_threshold)
    if slower := [r for r in suspects if r.batch is not None and r.runtime in RUNTIMES]:
        log(f"timing again to confirm: {', '.join(f'{r.runtime} batch {r.batch}' for r in slower)}")
        runtimes, batches = sorted({r.runtime for r in slower}), sorted({r.batch for r in slower})
        again = replace(cfg, runtimes=runtimes, batches=batches, save_inputs=None, triton=None)
        best_of(result, run_benchmark(again, log))
    return regressions(result, baseline, cfg.regression_threshold)


def main(cfg: BenchConfig, echo=print, log=print) -> BenchResult:
    """Benchmark, print the table, write the JSON and report, then fail (SiameseError) if any
    runtime failed or, with a baseline, regressed (and stayed slower when timed again)."""
    # every output's folder is proven writable before minutes of benchmarking
    for folder in [p.parent for p in (cfg.json_path, cfg.save_inputs) if p] + (
        [cfg.report_dir] if cfg.report_dir else []
    ):
        check_writable(folder)
    baseline = None
    if cfg.baseline:
        try:
            baseline = BenchResult.from_dict(
                json.loads(read_limited(cfg.baseline, "benchmark result")), str(cfg.baseline)
            )
        except (OSError, json.JSONDecodeError) as exc:
            raise SiameseError(f"{cfg.baseline}: unreadable baseline ({exc})") from None
    result = run_benchmark(cfg, log)
    reasons = incomparable(result, baseline) if baseline is not None else []
    found = confirmed_regressions(cfg, result, baseline, log) if baseline is not None and not reasons else []
    echo(header(result))
    echo(table(result))
    if cfg.json_path:
        write_json(Path(cfg.json_path), result.to_dict())
    if cfg.report_dir:
        echo(f"report: {write_report(result, cfg.report_dir)}")
    if reasons:
        raise SiameseError(f"{cfg.baseline} cannot be compared with this run: {'; '.join(reasons)}")
    problems = [f"{r.name} failed: {r.error}" for r in result.failed] + [str(r) for r in found]
    if baseline is not None and not found:
        echo(f"no regression against {cfg.baseline} beyond +{cfg.regression_threshold:.0%} (a suspect is timed twice)")
    if problems:
        raise SiameseError(f"{len(problems)} problem(s): " + " | ".join(problems))
    return result
