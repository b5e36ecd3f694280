"""ONNX Runtime with the CPU, CUDA or TensorRT execution provider.

ONNX Runtime quietly places on the CPU whatever a GPU provider cannot run. Here a session
whose first provider is not the one asked for is refused, and on a GPU provider one profiled
run checks where every node ran: a convolution or matrix product anywhere else fails the load.
fp32 sessions run with TF32 off (the CUDA provider's `use_tf32`; TensorRT has no such option,
only the process-wide `NVIDIA_TF32_OVERRIDE=0`, which its runner sets and the benchmark
applies in the child process it runs TensorRT in). TensorRT engines are cached per artifact
sha256, because ONNX Runtime's own cache key does not hash the weights.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from siamese.artifacts.folder import ExportFolder
from siamese.artifacts.formats import artifact_name
from siamese.backends.base import Abilities, Runner
from siamese.core.errors import SiameseError, first_line
from siamese.core.spec import FEATURE_DIM

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
# the nodes that hold the work: any of them off the requested provider fails the session
HEAVY_OPS = frozenset({"Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul"})
TRT_CACHE = Path("cache") / "trt"
GRAPH_LEVELS = ("disable", "basic", "extended", "all")


@dataclass(frozen=True)
class SessionTuning:
    """The CPU session options `python -m bench.studies.ort_session` sweeps; the defaults are what won there."""

    graph_level: str = "all"
    cpu_arena: bool = True
    spinning: bool = True  # intra-op threads spin between ops instead of sleeping


def session_options(ort, tuning: SessionTuning, threads: int | None):
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    levels = ort.GraphOptimizationLevel
    options.graph_optimization_level = {
        "disable": levels.ORT_DISABLE_ALL,
        "basic": levels.ORT_ENABLE_BASIC,
        "extended": levels.ORT_ENABLE_EXTENDED,
        "all": levels.ORT_ENABLE_ALL,
    }[tuning.graph_level]
    options.enable_cpu_mem_arena = tuning.cpu_arena
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if tuning.spinning else "0")
    return options


def import_onnxruntime():
    installed = []
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            installed.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    if len(installed) > 1:
        raise SiameseError(
            f"both {' and '.join(installed)} are installed; they share one module and break each other: "
            "pip uninstall -y onnxruntime onnxruntime-gpu, then install one"
        )
    try:
        import onnxruntime
    except ImportError:
        raise SiameseError("onnxruntime is not installed: pip install 'siamese-verify[cpu]' (or [gpu])") from None
    return onnxruntime


def trt_profiles(input_names: list[str], sample_shape: tuple[int, ...], batches) -> dict[str, str]:
    """TensorRT optimisation profiles, one per batch size: profile k covers the batch sizes
    above the previous one up to its own, and is tuned for that size."""
    tail = "x".join(str(d) for d in sample_shape)
    low, mins, opts = 1, [], []
    for batch in sorted(set(batches)):
        mins += [f"{name}:{low}x{tail}" for name in input_names]
        opts += [f"{name}:{batch}x{tail}" for name in input_names]
        low = batch + 1
    return {
        "trt_profile_min_shapes": ",".join(mins),
        "trt_profile_opt_shapes": ",".join(opts),
        "trt_profile_max_shapes": ",".join(opts),
    }


def provider_options(provider: str, precision: str, engine_cache: Path, profiles: dict) -> list:
    """The providers list for InferenceSession, with the options that make `precision` true."""
    if provider == "cuda":
        return [("CUDAExecutionProvider", {"use_tf32": "1" if precision == "tf32" else "0"})]
    if provider == "tensorrt":
        trt = {
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(engine_cache),
            "trt_timing_cache_enable": "True",
            "trt_timing_cache_path": str(engine_cache.parent),
            "trt_fp16_enable": "True" if precision == "fp16" else "False",
            **profiles,
        }
        return [("TensorrtExecutionProvider", trt), ("CUDAExecutionProvider", {"use_tf32": "0"})]
    return ["CPUExecutionProvider"]


def node_placement(profile: Path) -> list[tuple[str, str, str]]:
    """(node, op type, provider) of every node in an ONNX Runtime profile trace."""
    events = json.loads(Path(profile).read_text())
    return [
        (e["name"].removesuffix("_kernel_time"), e["args"]["op_name"], e["args"]["provider"])
        for e in events
        if e.get("cat") == "Node" and "provider" in e.get("args", {})
    ]


def misplaced(placement: list[tuple[str, str, str]], provider: str) -> list[str]:
    return sorted({f"{op} {node} on {where}" for node, op, where in placement if op in HEAVY_OPS and where != provider})


def make_session(
    path: Path,
    providers: list,
    threads: int | None = None,
    profile_dir: Path | None = None,
    tuning: SessionTuning = SessionTuning(),
    shown: Path | None = None,
):
    """An InferenceSession whose first provider is the one asked for, or a SiameseError naming
    `shown` (the export's file, where `path` is its verified private copy)."""
    shown = shown or path
    ort = import_onnxruntime()
    names = [p if isinstance(p, str) else p[0] for p in providers]
    missing = [n for n in names if n not in ort.get_available_providers()]
    if missing:
        raise SiameseError(
            f"ONNX Runtime {ort.__version__} here has no {', '.join(missing)} "
            f"(available: {', '.join(ort.get_available_providers())})"
        )
    options = session_options(ort, tuning, threads)
    if profile_dir is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_dir / "placement")
    if "CPUExecutionProvider" not in names:
        providers = [*providers, "CPUExecutionProvider"]  # for the shape ops a GPU provider leaves to the CPU
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # ORT raises its own exception types for corrupt models
        raise SiameseError(f"{shown}: ONNX Runtime cannot load it ({first_line(exc)})") from None
    active = session.get_providers()
    if active[0] != names[0]:
        raise SiameseError(f"{shown}: asked for {names[0]}, but ONNX Runtime fell back to {', '.join(active)}")
    return session


class OnnxRuntime(Runner):
    def __init__(
        self,
        provider: str = "cpu",
        precision: str = "fp32",
        threads: int | None = None,
        check_placement: bool | None = None,
        cache: Path = TRT_CACHE,
        tuning: SessionTuning = SessionTuning(),
    ):
        super().__init__(threads)
        self.provider = provider
        self.precision = precision
        self.check_placement = provider != "cpu" if check_placement is None else check_placement
        self.cache = Path(cache)
        self.tuning = tuning
        self.sessions: dict = {}
        self._baseline_memory = 0
        self.abilities = Abilities(
            device="cpu" if provider == "cpu" else "cuda",
            precision=precision,
            artifact="onnx",
            timed_with="wall clock",  # run_with_iobinding + synchronize_outputs return when the work is done
            takes_threads=provider == "cpu",
            loads_code=False,
            isolate=provider == "tensorrt",
            note={
                "cpu": "",
                "cuda": f"IO binding, use_tf32={int(precision == 'tf32')}",
                "tensorrt": "IO binding, engine cache per artifact sha256, one profile per batch size"
                + ("" if precision == "fp16" else ", NVIDIA_TF32_OVERRIDE=0"),
            }[provider],
        )

    def missing(self) -> str | None:
        try:
            ort = import_onnxruntime()
        except SiameseError as exc:
            return str(exc)
        if PROVIDERS[self.provider] not in ort.get_available_providers():
            return f"onnxruntime {ort.__version__} has no {PROVIDERS[self.provider]} (install onnxruntime-gpu)"
        return None

    def load(self, export: ExportFolder, graphs, batches=()) -> None:
        if self.provider == "tensorrt" and self.precision != "fp16":
            os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")  # TensorRT builds TF32 engines otherwise
        self.export = export
        self._baseline_memory = 0 if self.provider == "cpu" else self._device_memory_used()
        for graph in graphs:
            name = artifact_name(graph, "onnx")
            path = export.check_onnx(name)
            inputs = export.metadata.inputs(graph)
            sample = (FEATURE_DIM,) if graph == "compare" else (export.image_size, export.image_size, 3)
            engines = self.cache / export.sha256(name)[:16]
            providers = provider_options(
                self.provider, self.precision, engines, trt_profiles(inputs, sample, batches or [64])
            )
            shown = export.path / name
            self.sessions[graph] = self._session(path, shown, graph, providers)
            check_signature(self.sessions[graph], shown, inputs, export.metadata.outputs(graph), sample)

    def _session(self, path: Path, shown: Path, graph: str, providers: list):
        if not self.check_placement:
            return make_session(path, providers, self.threads, tuning=self.tuning, shown=shown)
        with tempfile.TemporaryDirectory() as tmp:
            session = make_session(path, providers, self.threads, profile_dir=Path(tmp), shown=shown)
            session.run(None, self._sample_feed(session, graph))
            placement = node_placement(Path(session.end_profiling()))
        wrong = misplaced(placement, PROVIDERS[self.provider])
        if not placement or wrong:
            where = ", ".join(wrong[:4]) if wrong else "no node was profiled"
            raise SiameseError(f"{shown}: not every node runs on {PROVIDERS[self.provider]}: {where}")
        return session

    def _sample_feed(self, session, graph: str) -> dict:
        size = self.export.image_size
        if graph == "compare":
            return {i.name: np.zeros((1, FEATURE_DIM), np.float32) for i in session.get_inputs()}
        return {i.name: np.zeros((1, size, size, 3), np.uint8) for i in session.get_inputs()}

    def run(self, graph, inputs):
        session = self.sessions[graph]
        names = [i.name for i in session.get_inputs()]
        return session.run(self.export.metadata.outputs(graph), dict(zip(names, inputs, strict=True)))

    def timed_call(self, a, b, from_host=False):
        if self.provider == "cpu":
            return lambda: self.run("pair", [a, b])
        ort = import_onnxruntime()
        session = self.sessions["pair"]
        binding = session.io_binding()
        for name, x in zip([i.name for i in session.get_inputs()], (a, b), strict=True):
            if from_host:
                binding.bind_cpu_input(name, np.ascontiguousarray(x))  # copied to the GPU by every run
            else:
                binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(x), "cuda", 0))
        for out in session.get_outputs():
            binding.bind_output(out.name, "cuda", 0)

        def run():
            session.run_with_iobinding(binding)
            binding.synchronize_outputs()

        return run

    @staticmethod
    def _device_memory_used() -> int:
        try:
            import torch

            if torch.cuda.is_available():
                free, total = torch.cuda.mem_get_info()
                return total - free
        except ImportError:
            pass
        return 0

    def peak_memory(self) -> int | None:
        # ONNX Runtime's arena never shrinks, so what the device holds now is what it peaked at
        return None if self.provider == "cpu" else self._device_memory_used() - self._baseline_memory

    def describe(self) -> dict:
        providers = next(iter(self.sessions.values())).get_providers() if self.sessions else [PROVIDERS[self.provider]]
        return {**super().describe(), "providers": providers}

    def close(self) -> None:
        self.sessions = {}


def check_signature(session, path: Path, inputs: list[str], outputs: list[str], sample: tuple) -> None:
    """Refuse a graph whose tensors are not the ones the export's metadata describes (an edited
    metadata.json would otherwise fail on the first call, deep inside ONNX Runtime)."""
    found = [(i.name, list(i.shape[1:])) for i in session.get_inputs()]
    wanted = [(name, list(sample)) for name in inputs]
    produced = {o.name for o in session.get_outputs()}
    if found != wanted or not set(outputs) <= produced:
        raise SiameseError(
            f"{path}: takes {found} and gives {sorted(produced)}, not the per-item inputs {wanted} "
            f"and outputs {outputs} its metadata.json describes; re-export it"
        )
