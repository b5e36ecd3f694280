"""A Triton Inference Server as a runner: the export's graphs answered by a server at a URL.

Runs the models of `siamese-serve` or of a `siamese-export --format triton` repository
(siamese_embedding, siamese_compare, siamese_pair) through `tritonclient`, over HTTP
(`http://host:port`, the default scheme) or gRPC (`grpc://host:port`). The export gives the
tensor names and the threshold; parity then tells whether the server answers as the export
does. Every `timed_call` opens its own connection, so concurrent benchmark clients (one per
thread, as perf_analyzer runs them) never share one.
"""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

import numpy as np

from siamese.artifacts.folder import TRITON_MODELS as MODEL_NAMES
from siamese.backends.base import Abilities, Runner
from siamese.core.errors import SiameseError, first_line
from siamese.core.provenance import missing_module

TRITON_DTYPES = {np.dtype(np.uint8): "UINT8", np.dtype(np.float32): "FP32"}
TIMEOUT_S = 60.0


def parse_url(url: str) -> tuple[str, str]:
    """(protocol, host:port) of a Triton URL; http when no scheme is given."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "grpc") or not parts.hostname or not parts.port or parts.path not in ("", "/"):
        raise SiameseError(f"Triton URL {url!r}: expected http://HOST:PORT or grpc://HOST:PORT")
    return parts.scheme, f"{parts.hostname}:{parts.port}"


class TritonClient(Runner):
    def __init__(self, url: str, threads: int | None = None):
        super().__init__(threads)
        self.protocol, self.address = parse_url(url)
        self.name = f"triton-{self.protocol}"
        self.max_batch: dict[str, int] = {}
        self.abilities = Abilities(
            device="cpu",  # the client's side: requests start and end in host memory
            precision="fp32",
            artifact="served",
            timed_with="wall clock",
            takes_threads=False,
            loads_code=False,
            served=True,
            note=f"Triton at {self.protocol}://{self.address}, one connection per client thread",
        )

    def _module(self):
        return importlib.import_module(f"tritonclient.{self.protocol}")

    def _client(self):
        module = self._module()
        if self.protocol == "http":
            return module.InferenceServerClient(self.address, connection_timeout=TIMEOUT_S, network_timeout=TIMEOUT_S)
        return module.InferenceServerClient(self.address)

    def missing(self) -> str | None:
        return missing_module("tritonclient", "pip install 'siamese-verify[serve]'")

    def unavailable(self, export) -> str | None:
        reason = self.missing()
        if reason:
            return reason
        try:
            live = self._client().is_server_live()
        except Exception as exc:  # connection refused, DNS, TLS: the client raises its own types
            live, reason = False, first_line(exc, with_type=True)
        return None if live else f"no live Triton server at {self.protocol}://{self.address} ({reason or 'not live'})"

    def load(self, export, graphs, batches=()) -> None:
        self.export = export
        client = self._client()
        for graph in graphs:
            model = MODEL_NAMES[graph]
            if not client.is_model_ready(model):
                raise SiameseError(f"Triton at {self.address} has no ready model {model} (siamese-serve serves it)")
            config = client.get_model_config(model)
            config = config.get("config", config) if isinstance(config, dict) else config.config
            self.max_batch[graph] = int(config["max_batch_size"] if isinstance(config, dict) else config.max_batch_size)

    def _infer(self, client, graph: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        module = self._module()
        meta = self.export.metadata
        requests = []
        for name, array in zip(meta.inputs(graph), inputs, strict=True):
            tensor = module.InferInput(name, list(array.shape), TRITON_DTYPES[array.dtype])
            tensor.set_data_from_numpy(np.ascontiguousarray(array))
            requests.append(tensor)
        wanted = [module.InferRequestedOutput(name) for name in meta.outputs(graph)]
        timeout = {"client_timeout": TIMEOUT_S} if self.protocol == "grpc" else {}
        result = client.infer(MODEL_NAMES[graph], requests, outputs=wanted, **timeout)
        # one value per item is served as shape (N, 1)
        return [
            out.reshape(len(out)) if out.ndim == 2 and out.shape[1] == 1 else out
            for out in (result.as_numpy(name) for name in meta.outputs(graph))
        ]

    def run(self, graph, inputs):
        """Inputs larger than the server's max batch go in several requests."""
        client, step = self._client(), self.max_batch.get(graph, len(inputs[0]))
        chunks = [self._infer(client, graph, [x[i : i + step] for x in inputs]) for i in range(0, len(inputs[0]), step)]
        return [np.concatenate(parts) for parts in zip(*chunks, strict=True)]

    def timed_call(self, a, b, from_host=False):
        """One request of all the pairs: a timed batch larger than the server's is an error, not chunks."""
        if len(a) > self.max_batch["pair"]:
            raise SiameseError(
                f"batch {len(a)} exceeds the server's max batch size {self.max_batch['pair']}; "
                "serve with a larger --max-batch"
            )
        client = self._client()
        return lambda: self._infer(client, "pair", [a, b])

    def close(self) -> None:
        self.max_batch = {}
