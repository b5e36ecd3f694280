"""The benchmark result: typed records with a schema version, written as JSON and read back
(for `--compare`) in one place."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from siamese.core.errors import SiameseError
from siamese.core.records import from_dict
from siamese.parity.compare import ParityResult, coarser

SCHEMA = "siamese-bench/2"
STATUSES = ("ok", "failed", "unavailable")


@dataclass
class Peak:
    """The reference rate a runtime's GFLOP/s is divided by, and what it was measured with."""

    gflops: float
    label: str


@dataclass
class TimingResult:
    batch: int
    iterations: int
    latency_ms: dict[str, float]  # min, median, p90, p99, max over every timed call
    spread: float  # (slowest - fastest) of the repeats' medians, relative to the median
    pairs_per_s: float
    gflops: float
    peak_share: float | None
    first_call_ms: float  # the first call at this batch size: compilation, engine build, allocation
    with_copy_ms: float | None = None  # median when every call starts from host memory (device runtimes)
    peak_memory_mb: float | None = None  # device memory, where the device reports it
    # share of the machine's CPUs others took during the timed calls (bench.machine.OthersLoad);
    # None for a served runtime (its server is another process) or a result from before it was measured
    others_load: float | None = None
    passes: int = 1  # 2: timed again by --compare, these figures the faster pass's (bench.report.best_of)


@dataclass
class LoadResult:
    """A server under `concurrency` clients, each sending requests of `batch` pairs back to back."""

    concurrency: int
    batch: int
    requests: int
    pairs_per_s: float
    latency_ms: dict[str, float]  # p50, p90, p99, max over every request, as each client saw it


@dataclass
class RuntimeResult:
    name: str
    status: str  # ok | failed (error says why: a bug or a numerical failure) | unavailable (reason says why)
    abilities: dict
    reason: str | None = None
    error: str | None = None
    parity: ParityResult | None = None
    timing: list[TimingResult] = field(default_factory=list)
    load: list[LoadResult] = field(default_factory=list)  # served runtimes: per concurrency and batch

    def fail(self, error: str) -> RuntimeResult:
        self.status, self.error = "failed", error
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d["parity"] = self.parity.to_dict() if self.parity else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RuntimeResult:
        return cls(
            name=d["name"],
            status=d["status"],
            abilities=d.get("abilities", {}),
            reason=d.get("reason"),
            error=d.get("error"),
            parity=ParityResult.from_dict(d["parity"]) if d.get("parity") else None,
            timing=[TimingResult(**t) for t in d.get("timing", [])],
            load=[LoadResult(**x) for x in d.get("load", [])],
        )


def arithmetic_key(device: str, runner_precision: str, export_dtype: str, artifact: str) -> str:
    """Which hardware limit a runtime's figures are shares of: its device and the arithmetic it
    runs. A graph runs at the coarser of the runtime's precision and the export's dtype (an fp32
    runtime of an INT8 graph computes in int8); the weights (eager, torch.compile) are fp32
    whatever the export's dtype, so those runtimes compute in their own precision."""
    return f"{device}-{runner_precision if artifact == 'weights' else coarser(runner_precision, export_dtype)}"


@dataclass
class Machine:
    """What the figures were measured on (bench.machine.machine_info)."""

    cpu: str
    cores: int
    torch_threads: int
    platform: str
    python: str
    versions: dict  # library -> version (None where absent)
    gpu: dict | None = None  # name, memory_gib, driver, cuda, cudnn
    git_commit: str | None = None


@dataclass
class BenchedExport:
    """Which model answered: the export benchmarked, and how it was trained."""

    path: str
    weights: str  # how its weights were obtained (trained, or untrained and said so)
    variant: str
    dtype: str
    image_size: int
    threshold: float
    training: dict  # its TrainedOn record (siamese.artifacts.records)
    formats: list
    signature: str  # "verified" or "not checked"
    manifest_sha256: str = ""  # the export's identity: what --compare checks it is the same export


@dataclass
class BenchResult:
    created: str
    machine: Machine
    export: BenchedExport
    flops_per_pair: float
    parity_inputs: str
    reference: str  # which runner produced the reference outputs, from which weights
    settings: dict
    peaks: dict[str, Peak] = field(default_factory=dict)  # "<device>-<precision>" -> the run's best torch GEMM
    # "<device>-<precision>" -> cores x FLOPs per cycle x clock, where the CPU reports enough to say
    hardware_peaks: dict[str, Peak] = field(default_factory=dict)
    command: str = ""  # the command line that produced it, for the report
    runtimes: list[RuntimeResult] = field(default_factory=list)
    schema: str = SCHEMA

    @property
    def failed(self) -> list[RuntimeResult]:
        return [r for r in self.runtimes if r.status == "failed"]

    @property
    def passed(self) -> bool:
        return not self.failed and any(r.status == "ok" for r in self.runtimes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["runtimes"] = [r.to_dict() for r in self.runtimes]
        d["passed"] = self.passed
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "benchmark result") -> BenchResult:
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            found = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise SiameseError(f"{source}: schema {found!r} is not {SCHEMA}; re-run siamese-bench --json")
        try:
            return cls(
                created=d["created"],
                machine=from_dict(Machine, d["machine"], f"{source}: machine"),
                export=from_dict(BenchedExport, d["export"], f"{source}: export"),
                flops_per_pair=d["flops_per_pair"],
                parity_inputs=d["parity_inputs"],
                reference=d["reference"],
                settings=d["settings"],
                peaks={k: Peak(**v) for k, v in d.get("peaks", {}).items()},
                hardware_peaks={k: Peak(**v) for k, v in d.get("hardware_peaks", {}).items()},
                command=d.get("command", ""),
                runtimes=[RuntimeResult.from_dict(r) for r in d["runtimes"]],
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:  # a JSON of another shape
            raise SiameseError(f"{source}: malformed benchmark result ({type(exc).__name__}: {exc})") from None
