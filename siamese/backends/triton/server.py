"""siamese-serve: an export behind NVIDIA Triton Inference Server, through PyTriton.

PyTriton (`pip install 'siamese-verify[serve]'`) ships a Triton server binary with the Python
backend, which runs anywhere, CPU included. The three graphs are served under the names of
the Triton model repository (`siamese-export --format triton`), with the same tensors, and
Triton's dynamic batching; each request runs in one of this toolkit's runtimes (ort-cpu by
default), loaded once, manifest-checked as every other tool loads it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sysconfig
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from siamese.artifacts.folder import DEFAULT_POLICY, ExportFolder, ExportPolicy
from siamese.artifacts.formats import GRAPHS
from siamese.backends import create
from siamese.backends.triton.repository import DEFAULT_SERVING, MODEL_NAMES, ServingConfig
from siamese.core.errors import SiameseError, Terminated
from siamese.core.provenance import missing_module
from siamese.core.spec import FEATURE_DIM

# how long a stopping server waits for requests in flight and for its Python-backend models to
# unload: at 2 s, on 2 busy cores, the last model was still unloading ("Exit timeout expired")
SHUTDOWN_GRACE_S = 10


def _shared_memory_prefix(triton) -> str | None:
    """The prefix of the /dev/shm regions of this server's Python-backend stubs: PyTriton draws
    one per server (pid and a random part), so every region under it is this server's."""
    config = getattr(triton, "_python_backend_config", None)
    try:
        return config["shm-region-prefix-name"] if config is not None else None
    except KeyError:
        return None


def _unlink_shared_memory(prefix: str | None) -> None:
    """Remove the regions a stopped server left: tritonserver unlinks them only when it shuts
    down in time; PyTriton kills it after 30 s (a loaded machine), and they stay until reboot."""
    if not prefix:
        return
    shm = Path("/dev/shm")
    for region in shm.glob(f"{prefix}*") if shm.is_dir() else ():
        with contextlib.suppress(FileNotFoundError):
            region.unlink()


@dataclass(frozen=True)
class ServerAddress:
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def check_free(self) -> None:
        """Refuse, in one line and before anything starts, ports that repeat or that another
        program listens on (Triton itself would hang on the first, and fail late on the second)."""
        ports = {"--http-port": self.http_port, "--grpc-port": self.grpc_port, "--metrics-port": self.metrics_port}
        seen: dict[int, str] = {}
        for option, port in ports.items():
            if port in seen:
                raise SiameseError(f"{seen[port]} and {option} are both {port}: each needs its own port")
            seen[port] = option
        for option, port in ports.items():
            try:
                family, kind, proto, _, where = socket.getaddrinfo(self.host, port, type=socket.SOCK_STREAM)[0]
                with socket.socket(family, kind, proto) as probe:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
                    probe.bind(where)
            except socket.gaierror as exc:
                raise SiameseError(f"cannot listen on host {self.host!r}: {exc.strerror}") from None
            except OSError as exc:
                raise SiameseError(
                    f"cannot listen on {self.host}:{port} ({option}): {exc.strerror}; "
                    f"is another server running there? choose another {option}"
                ) from None


def tensor_shapes(export: ExportFolder, graph: str) -> tuple[dict, dict]:
    """(inputs, outputs): name -> (dtype, per-item shape) as served, from the export's metadata.
    One value per item is served as shape (1,), as the repository's configs declare it."""
    size = export.image_size
    meta = export.metadata
    item = (FEATURE_DIM,) if graph == "compare" else (size, size, 3)
    dtype = np.float32 if graph == "compare" else np.uint8
    inputs = {name: (dtype, item) for name in meta.inputs(graph)}
    if graph == "embedding":
        return inputs, {name: (np.float32, (FEATURE_DIM,)) for name in meta.outputs(graph)}
    return inputs, {name: (np.bool_ if name == "same" else np.float32, (1,)) for name in meta.outputs(graph)}


def stop_on_sigterm() -> threading.Event:
    """An event that SIGTERM sets (in the main thread; elsewhere signals cannot be handled)."""
    stop = threading.Event()
    # (not tested with threading.main_thread(): tritonclient's gevent makes that unreliable here)
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    return stop


class Server:
    """A running Triton server over one export: `with Server(...) as server:` starts it on
    local ports and stops it, with its runtime, on leaving."""

    def __init__(
        self,
        export_dir,
        runtime: str = "ort-cpu",
        address: ServerAddress = ServerAddress(),
        serving: ServingConfig = DEFAULT_SERVING,
        policy: ExportPolicy = DEFAULT_POLICY,
        threads: int | None = None,
        log_file: Path | None = None,
    ):
        reason = missing_module("pytriton", "pip install 'siamese-verify[serve]'")
        if reason:
            raise SiameseError(reason)
        self.export = ExportFolder.open(export_dir, policy)
        address.check_free()
        self.runner = create(runtime, threads)
        reason = self.runner.unavailable(self.export)
        if reason:
            raise SiameseError(f"runtime {runtime} cannot run here: {reason}")
        self.address, self.serving, self.triton = address, serving, None
        self.log_file = Path(log_file).resolve() if log_file else None  # Triton's own log; default: the console

    def _infer(self, graph: str):
        from pytriton.decorators import batch

        names = self.export.metadata.inputs(graph)
        _, outputs = tensor_shapes(self.export, graph)

        @batch
        def infer(**inputs):
            named = self.runner.call(graph, [inputs[name] for name in names])
            return {name: named[name].reshape(len(named[name]), *shape) for name, (_, shape) in outputs.items()}

        return infer

    def start(self) -> Server:
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig

        self.runner.load(self.export, GRAPHS)
        # the Python backend's stub embeds libpython: the one of this interpreter, not the system's
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH")) if p)
        config = TritonConfig(
            http_address=self.address.host,
            http_port=self.address.http_port,
            grpc_address=self.address.host,
            grpc_port=self.address.grpc_port,
            metrics_address=self.address.host,
            metrics_port=self.address.metrics_port,
            exit_on_error=True,
            exit_timeout_secs=SHUTDOWN_GRACE_S,
            # without an NVIDIA driver, GPU metrics only print NVML errors at start-up
            allow_gpu_metrics=Path("/dev/nvidiactl").exists(),
            log_file=self.log_file,
        )
        self.triton = Triton(config=config)
        batcher = DynamicBatcher(
            max_queue_delay_microseconds=self.serving.max_queue_delay_us,
            preferred_batch_size=list(self.serving.preferred_batch_sizes),
        )
        try:
            for graph in GRAPHS:
                inputs, outputs = tensor_shapes(self.export, graph)
                self.triton.bind(
                    model_name=MODEL_NAMES[graph],
                    infer_func=self._infer(graph),
                    inputs=[Tensor(name=n, dtype=d, shape=s) for n, (d, s) in inputs.items()],
                    outputs=[Tensor(name=n, dtype=d, shape=s) for n, (d, s) in outputs.items()],
                    config=ModelConfig(max_batch_size=self.serving.max_batch_size, batcher=batcher),
                    strict=True,
                )
            self.triton.run()
        except Exception as exc:  # PyTriton raises its own errors (ports taken, server died)
            self.stop()
            raise SiameseError(f"Triton did not start on {self.address.host}: {exc}") from None
        return self

    def serve_forever(self, stop: threading.Event | None = None) -> None:
        """Block until interrupted (Ctrl-C or SIGTERM) or the server dies, then stop: the
        workspace and shared memory go either way. SIGTERM only sets a flag (an exception raised
        inside PyTriton's stopping code would only print a traceback there), then Terminated is
        raised once everything is stopped. The flag stays the handler: PyTriton's helpers send
        more SIGTERMs as they go. `stop`: a flag set earlier (siamese-serve sets it from the
        first moment, so that a SIGTERM during start-up is handled the same way)."""
        stop = stop or stop_on_sigterm()
        try:
            while not stop.is_set() and self.triton.is_alive():
                stop.wait(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()
        if stop.is_set():
            raise Terminated()

    def stop(self) -> None:
        if self.triton is not None:
            prefix = _shared_memory_prefix(self.triton)
            self.triton.stop()
            self.triton = None
            _unlink_shared_memory(prefix)
        self.runner.close()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
