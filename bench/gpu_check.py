"""The one-call GPU check (`bench/gpu_check.sh OUT`): every CUDA path of the toolkit in one
command, each step's result a JSON under OUT, a Markdown summary, the logs beside them.

Steps, in order; one that fails is recorded and the next still runs:
1. environment: GPU, driver, CUDA, torch, ONNX Runtime and TensorRT versions, clocks, and the
   measured matrix-product rates (fp32, TF32, bf16, fp16) that `% of peak` divides by;
2. the suite's GPU tests (`pytest -m gpu`): each CUDA runtime's parity, the pt2 device move, TF32;
3. training on CUDA: three epochs of the default bce recipe on a carried LFW training pack
   (`siamese-data pack`, `make gpu-pack`): images/s, the share of each epoch spent on data and
   augmentation, and the epoch time once compiled;
4. `siamese-bench` at every batch size, every CUDA runtime, on the export given, else on an
   export of step 3's checkpoint (weights trained there: no 544 MB export has to travel);
5. a torch profiler summary of the fastest torch runtime at the largest batch size.

`--dry` runs the same steps where there is no GPU, as CI does: CUDA rows come out `unavailable`
with their reason, and the other steps run for real at tiny sizes on the CPU (one epoch on a
16 px pack, uncompiled; without a pack, a 16 px untrained network, said so in the summary), so
the check cannot rot before a GPU appears.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click

from siamese.core.errors import SiameseError, first_line, user_errors
from siamese.core.files import write_json, write_text

SCHEMA = "siamese-gpu-check/1"


@dataclass
class Step:
    """One step's outcome, as OUT/NN-name.json holds it."""

    number: int
    name: str
    status: str  # ok | failed (error says why) | unavailable (reason says why)
    seconds: float
    facts: dict = field(default_factory=dict)
    reason: str | None = None
    error: str | None = None
    log: str | None = None  # the step's log file, relative to OUT
    schema: str = SCHEMA


@dataclass
class CheckConfig:
    out: Path
    export: Path | None  # None: an export of step 3's checkpoint (--dry without a pack: a tiny untrained one)
    batches: list[int]
    dry: bool
    pack: Path | None = None  # a training pack (siamese-data pack); None: step 3 is unavailable
    threads: int | None = None

    @property
    def device(self) -> str:
        return "cpu" if self.dry else "cuda"


def _cuda_runtimes() -> list[str]:
    from siamese.backends import RUNTIMES

    return [name for name, spec in RUNTIMES.items() if spec.create(name).abilities.device == "cuda"]


def _run(command: list[str], log: Path, timeout: float) -> int:
    """A subprocess whose output goes to `log`; its exit code (124 when it ran out of time)."""
    with open(log, "w") as f:
        f.write("$ " + " ".join(command) + "\n")
        f.flush()
        try:
            return subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            f.write(f"\n[gpu_check: stopped after {timeout:.0f} s]\n")
            return 124


def environment(cfg: CheckConfig) -> dict:
    import torch

    from bench.machine import machine_info
    from bench.timing import peak_gflops
    from siamese.core.provenance import version

    machine = asdict(machine_info(cfg.threads))  # torch, ONNX Runtime (CPU and GPU) and more among its versions
    facts: dict = {
        "machine": machine,
        "versions": {**machine["versions"], **{d: version(d) for d in ("tensorrt", "openvino")}},
    }
    facts["torch_cuda"], facts["cudnn"] = torch.version.cuda, torch.backends.cudnn.version()
    try:
        import onnxruntime

        facts["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError as exc:
        facts["onnxruntime_providers"] = f"unavailable: {exc}"
    query = "name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit,memory.total,temperature.gpu"
    try:
        smi = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv"], capture_output=True, text=True, timeout=30
        )
        facts["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        facts["nvidia_smi"] = f"unavailable: {first_line(exc)}"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    precisions = ("fp32", "tf32", "bf16", "fp16") if device == "cuda" else ("fp32",)
    seconds = 0.2 if cfg.dry else 2.0
    facts["peaks_gflops"] = {}
    for precision in precisions:
        peak = peak_gflops(device, precision, seconds)
        facts["peaks_gflops"][f"{device}-{precision}"] = {"gflops": peak.gflops, "label": peak.label}
    return facts


def gpu_tests(cfg: CheckConfig) -> dict:
    report = cfg.out / "02-gpu-tests.xml"
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
    command.append(f"--basetemp={cfg.out / '02-pytest-tmp'}")  # its own: never the calling pytest's folders
    code = _run(command, cfg.out / "02-gpu-tests.log", timeout=120 if cfg.dry else 240)
    if not report.is_file():
        raise SiameseError(f"pytest wrote no report (exit code {code}): see 02-gpu-tests.log")
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [
        case.get("classname", "") + "::" + case.get("name", "")
        for case in suite.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    facts = {
        "exit_code": code,
        **counts,
        "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
    }
    facts["failed_tests"] = failed
    if code not in (0, 5) or failed:  # 5: nothing collected, which the counts show
        raise SiameseError(f"{len(failed)} GPU test(s) failed: {', '.join(failed[:5]) or f'exit code {code}'}")
    return facts


def training(cfg: CheckConfig) -> dict:
    """The default bce recipe for a few epochs on the pack: what an epoch costs on this device."""
    from siamese.artifacts.checkpoint import load_checkpoint
    from siamese.data.pack import PackRecord

    if cfg.pack is None:
        raise _Unavailable("no --pack given: `make gpu-pack` (or siamese-data pack DIR) writes one to carry")
    pack = PackRecord.read(cfg.pack)
    epochs = 1 if cfg.dry else 3  # the first compiles; the last is the steady state
    command = [sys.executable, "-m", "siamese.cli.train", "--data", str(cfg.pack), "--variant", "bce"]
    command += ["--epochs", str(epochs), "--image-size", str(pack.image_size), "--device", cfg.device]
    command += ["--crop", "1"]  # a pack holds whole frames, and an epoch costs the same whatever the crop
    command += ["--out", str(cfg.out / "03-train")]
    if cfg.dry:
        command += ["--compile", "off"]  # Inductor's CPU compile alone would take minutes here
    code = _run(command, cfg.out / "03-training.log", timeout=240 if cfg.dry else 300)
    checkpoint = next((cfg.out / "03-train").glob("*/*/checkpoint.pt"), None)
    if code != 0 or checkpoint is None:
        raise SiameseError(f"siamese-train exited with {code}: see 03-training.log")
    ckpt = load_checkpoint(checkpoint)
    epochs = [
        {
            "epoch": h.epoch,
            "images_per_s": h.images_per_s,
            "epoch_s": h.epoch_s,
            "data_share": h.data_s / h.epoch_s if h.data_s is not None and h.epoch_s > 0 else None,
        }
        for h in ckpt.history
    ]
    last = ckpt.history[-1]
    return {
        "checkpoint": str(checkpoint),
        "device": cfg.device,
        "pack": str(cfg.pack),
        "image_size": pack.image_size,
        "train_images_per_epoch": last.images,
        "epochs": epochs,
        "epoch_s_steady": last.epoch_s,  # the last epoch: compiled, warm
        "test_accuracy": ckpt.summary.accuracy if ckpt.summary else None,
    }


def export_for_bench(cfg: CheckConfig, trained: Step) -> tuple[Path, str]:
    """The export step 4 measures, and how the summary names it."""
    from siamese.artifacts.checkpoint import untrained_checkpoint
    from siamese.tasks.export import export_checkpoint

    if cfg.export is not None:
        return cfg.export, f"`{cfg.export}` (given)"
    formats = ("onnx", "torchscript", "pt2")
    if trained.status == "ok":
        ckpt, note = Path(trained.facts["checkpoint"]), "trained by step 3 (a few epochs: speed, not accuracy)"
        dest, _ = export_checkpoint(ckpt, cfg.out / "04-exports", "trained-here", formats=formats, log=lambda m: None)
        return dest, f"`{dest}`, {note}"
    if not cfg.dry:
        raise _Unavailable(f"no export to benchmark: step 3 trained none ({trained.status}), and no --export was given")
    ckpt = untrained_checkpoint(cfg.out / "dry" / "checkpoint.pt", "contrastive", image_size=16)
    dest, _ = export_checkpoint(
        ckpt,
        cfg.out / "dry" / "exports",
        "untrained-16px",
        formats=("onnx",),
        force=True,
        log=lambda m: None,
        untrained=True,
    )
    return dest, f"`{dest}` (16 px, UNTRAINED: without a pack the dry run checks the steps, not a model)"


def benchmark(cfg: CheckConfig, export: Path) -> dict:
    from bench.result import BenchResult

    runtimes = _cuda_runtimes() + (["eager-fp32-cpu", "ort-cpu"] if cfg.dry else [])
    result_json = cfg.out / "04-bench-result.json"
    command = [sys.executable, "-m", "bench.cli", "--export", str(export), "--runtimes", ",".join(runtimes)]
    command += [
        "--batch",
        ",".join(map(str, cfg.batches)),
        "--json",
        str(result_json),
        "--report",
        str(cfg.out / "bench"),
    ]
    command += ["--trust-export", "--duration", "0.2" if cfg.dry else "2", "--isolate"]
    if cfg.dry:
        command += ["--parity-pairs", "0", "--random-pairs", "8", "--warmup-seconds", "0"]
    code = _run(command, cfg.out / "04-bench.log", timeout=240 if cfg.dry else 420)
    if not result_json.is_file():
        raise SiameseError(f"siamese-bench wrote no result (exit code {code}): see 04-bench.log")
    result = BenchResult.from_dict(json.loads(result_json.read_text()), str(result_json))
    rows = []
    for entry in result.runtimes:
        best = max(entry.timing, key=lambda t: t.pairs_per_s, default=None)
        rows.append(
            {
                "runtime": entry.name,
                "status": entry.status,
                "why": entry.error or entry.reason,
                "parity": None if entry.parity is None else entry.parity.passed,
                "best_pairs_per_s": best.pairs_per_s if best else None,
                "at_batch": best.batch if best else None,
                "batch1_median_ms": next((t.latency_ms["median"] for t in entry.timing if t.batch == 1), None),
            }
        )
    facts = {"exit_code": code, "export": result.export.path, "weights": result.export.weights, "runtimes": rows}
    if result.failed:
        failures = "; ".join(f"{r.name}: {r.error}" for r in result.failed)
        raise _Failed(facts, f"{len(result.failed)} runtime(s) failed: {failures}")
    return facts


def profile(cfg: CheckConfig, export: Path) -> dict:
    """The fastest ok torch runtime of step 4 at the largest batch, under torch.profiler."""
    import numpy as np
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from bench.result import BenchResult
    from siamese.artifacts.folder import ExportFolder, ExportPolicy
    from siamese.backends import RUNTIMES

    result = BenchResult.from_dict(json.loads((cfg.out / "04-bench-result.json").read_text()))
    batch = max(cfg.batches)
    candidates = [
        (t.pairs_per_s, e.name)
        for e in result.runtimes
        if e.status == "ok" and e.abilities.get("artifact") in ("weights", "torchscript", "pt2", "aoti")
        for t in e.timing
        if t.batch == batch
    ]
    if not candidates:
        raise _Unavailable(f"no torch runtime of step 4 ran ok at batch {batch}")
    _, name = max(candidates)
    runner = RUNTIMES[name].create(name, cfg.threads)
    runner.load(ExportFolder.open(export, ExportPolicy(trust_code=True)), ("pair",), [batch])
    size = result.export.image_size
    a, b = (np.random.default_rng(i).integers(0, 256, (batch, size, size, 3), dtype=np.uint8) for i in (0, 1))
    call = runner.timed_call(a, b)
    for _ in range(3):
        call()
    runner.synchronize()
    cuda = runner.abilities.device == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch_profile(activities=activities) as prof:
        for _ in range(5):
            call()
        runner.synchronize()
    runner.close()
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)
    total = sum(getattr(e, key) for e in events) or 1.0
    top = [
        {"name": e.key, "calls": e.count, "us": getattr(e, key), "share": getattr(e, key) / total} for e in events[:15]
    ]
    write_text(cfg.out / "05-profile.txt", prof.key_averages().table(sort_by=key, row_limit=25) + "\n")
    return {"runtime": name, "batch": batch, "timed_calls": 5, "measured": key, "top": top}


class _Unavailable(Exception):
    pass


class _Failed(Exception):
    def __init__(self, facts: dict, message: str):
        super().__init__(message)
        self.facts = facts


def run_step(cfg: CheckConfig, number: int, name: str, work, log: str | None = None) -> Step:
    started = time.perf_counter()
    step = Step(number, name, "ok", 0.0, log=log)
    try:
        step.facts = work()
    except _Unavailable as exc:
        step.status, step.reason = "unavailable", str(exc)
    except _Failed as exc:
        step.status, step.error, step.facts = "failed", str(exc), exc.facts
    except Exception as exc:  # one step's failure is its record: the next step still runs
        step.status, step.error = "failed", first_line(exc, with_type=True)
    step.seconds = time.perf_counter() - started
    write_json(cfg.out / f"{number:02d}-{name}.json", asdict(step))
    print(
        f"[{number}] {name}: {step.status} in {step.seconds:.0f} s"
        + (f" ({step.error or step.reason})" if step.status != "ok" else ""),
        flush=True,
    )
    return step


def summary(cfg: CheckConfig, steps: list[Step], export_note: str) -> str:
    lines = [f"# GPU check ({'dry run, no GPU: ' if cfg.dry else ''}{time.strftime('%Y-%m-%d %H:%M %Z')})", ""]
    lines += [f"Export: {export_note}. Batches: {', '.join(map(str, cfg.batches))}.", ""]
    lines += ["| step | status | seconds | detail |", "| --- | --- | --- | --- |"]
    for s in steps:
        lines.append(f"| {s.number} {s.name} | {s.status} | {s.seconds:.0f} | {s.error or s.reason or ''} |")
    trained = next((s for s in steps if s.name == "training"), None)
    if trained and trained.facts.get("epochs"):
        lines += ["", f"Training on {trained.facts['device']} ({trained.facts['image_size']} px pack):", ""]
        lines += ["| epoch | images/s | seconds | data and augmentation |", "| --- | --- | --- | --- |"]
        for e in trained.facts["epochs"]:
            share = "-" if e["data_share"] is None else f"{e['data_share']:.0%}"
            lines.append(f"| {e['epoch']} | {e['images_per_s']:.0f} | {e['epoch_s']:.1f} | {share} |")
    bench = next((s for s in steps if s.name == "bench"), None)
    if bench and bench.facts.get("runtimes"):
        lines += ["", "| runtime | status | parity | best pairs/s | at batch | batch-1 median ms | why |"]
        lines += ["| --- | --- | --- | --- | --- | --- | --- |"]
        for r in bench.facts["runtimes"]:
            pairs = f"{r['best_pairs_per_s']:.0f}" if r["best_pairs_per_s"] else "-"
            b1 = f"{r['batch1_median_ms']:.3f}" if r["batch1_median_ms"] else "-"
            parity = {True: "ok", False: "FAIL", None: "-"}[r["parity"]]
            cells = [r["runtime"], r["status"], parity, pairs, r["at_batch"] or "-", b1, r["why"] or ""]
            lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"


def main(cfg: CheckConfig) -> list[Step]:
    import torch

    if not cfg.dry and not torch.cuda.is_available():
        raise SiameseError("no CUDA device here: run with --dry to check the script itself on a CPU")
    cfg.out.mkdir(parents=True, exist_ok=True)
    steps = [run_step(cfg, 1, "environment", lambda: environment(cfg))]
    steps.append(run_step(cfg, 2, "gpu-tests", lambda: gpu_tests(cfg), "02-gpu-tests.log"))

    trained = run_step(cfg, 3, "training", lambda: training(cfg), "03-training.log")
    steps.append(trained)
    measured = {}  # the export step 4 made or was given, for step 5

    def bench():
        export, measured["note"] = export_for_bench(cfg, trained)
        facts = benchmark(cfg, export)
        measured["export"] = export
        return facts

    def profiled():
        if "export" not in measured:
            raise _Unavailable("step 4 benchmarked no export")
        return profile(cfg, measured["export"])

    steps.append(run_step(cfg, 4, "bench", bench, "04-bench.log"))
    steps.append(run_step(cfg, 5, "profile", profiled))
    write_text(cfg.out / "summary.md", summary(cfg, steps, measured.get("note", "none")))
    return steps


@click.command(context_settings={"show_default": True})
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--export", type=click.Path(exists=True, file_okay=False, path_type=Path), help="the export to benchmark")
@click.option(
    "--pack",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="training pack for step 3 (make gpu-pack); without --export, step 4 benchmarks what step 3 trained",
)
@click.option("--batch", "batches", default="1,8,64,256", help="batch sizes of the bench and profile steps")
@click.option("--dry", is_flag=True, help="no GPU: CUDA rows unavailable, the rest real at tiny sizes")
@user_errors
def cli(out: Path, export: Path | None, pack: Path | None, batches: str, dry: bool) -> None:
    """Run every CUDA path of the toolkit; results under OUT (a JSON per step, summary.md, logs)."""
    if export is None and pack is None and not dry:
        raise SiameseError("a GPU check needs --pack DIR (make gpu-pack), --export DIR, or both")
    sizes = [int(b) for b in batches.split(",")]
    steps = main(CheckConfig(out, export, sizes if not dry else [1, 2], dry, pack))
    click.echo(f"summary: {out / 'summary.md'}")
    if any(s.status == "failed" for s in steps):
        sys.exit(1)


if __name__ == "__main__":
    cli()
