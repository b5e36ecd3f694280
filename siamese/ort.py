"""ONNX Runtime sessions that run where they were asked to, or say why not."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from siamese.errors import SiameseError

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


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


def make_session(path: Path, providers: list | None = None, threads: int | None = None):
    """An InferenceSession on exactly the requested providers (default CPU).

    ONNX Runtime silently falls back to CPU when a provider cannot start; here that is an error.
    `providers` items are names, aliases (cpu, cuda, tensorrt) or (name, options) tuples.
    """
    ort = import_onnxruntime()
    requested = [PROVIDER_ALIASES.get(p, p) if isinstance(p, str) else p for p in providers or ["cpu"]]
    names = [p if isinstance(p, str) else p[0] for p in requested]
    missing = [n for n in names if n not in ort.get_available_providers()]
    if missing:
        raise SiameseError(
            f"ONNX Runtime {ort.__version__} here has no {', '.join(missing)} "
            f"(available: {', '.join(ort.get_available_providers())})"
        )
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    if "CPUExecutionProvider" not in names:
        names.append("CPUExecutionProvider")  # for the few ops a GPU provider leaves to the CPU
        requested.append("CPUExecutionProvider")
    try:
        session = ort.InferenceSession(str(path), options, providers=requested)
    except Exception as exc:  # ORT raises its own exception types for corrupt models
        raise SiameseError(f"{path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from None
    active = session.get_providers()
    if active[0] != names[0]:
        raise SiameseError(f"{path}: asked for {names[0]}, but ONNX Runtime fell back to {', '.join(active)}")
    return session
