"""siamese-serve for real: Triton (PyTriton) on 127.0.0.1, pairs sent with tritonclient over
HTTP and gRPC, answers checked against siamese-verify's, then shut down."""

import os
import signal
import socket
from pathlib import Path

import numpy as np
import pytest
from conftest import free_ports

pytest.importorskip("pytriton", reason="the serve extra (nvidia-pytriton) is not installed")

from siamese.artifacts.folder import ExportFolder  # noqa: E402
from siamese.backends.triton.repository import MODEL_NAMES, ServingConfig  # noqa: E402
from siamese.backends.triton.server import Server, ServerAddress  # noqa: E402
from siamese.tasks.verify import Verifier  # noqa: E402

TIMEOUT_S = 30  # per request


@pytest.fixture(scope="module")
def server(small_export):
    _, export, _ = small_export("contrastive")
    address = ServerAddress("127.0.0.1", *free_ports(3))
    with Server(export, "ort-cpu", address, ServingConfig(max_batch_size=16, preferred_batch_sizes=(16,))) as running:
        yield running


def image_files(tmp_path: Path, n: int) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(1)
    files = []
    for i in range(n):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(files[-1])
    return files


def infer(client_module, url: str, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict:
    client = client_module.InferenceServerClient(url)
    requests = []
    for name, array in inputs.items():
        tensor = client_module.InferInput(name, list(array.shape), "UINT8" if array.dtype == np.uint8 else "FP32")
        tensor.set_data_from_numpy(array)
        requests.append(tensor)
    kwargs = {"client_timeout": TIMEOUT_S} if client_module.__name__.endswith("grpc") else {"timeout": TIMEOUT_S}
    result = client.infer(model, requests, **kwargs)
    return {name: result.as_numpy(name) for name in outputs}


def test_served_pairs_match_siamese_verify_over_http_and_grpc(server, tmp_path):
    import tritonclient.grpc as grpc
    import tritonclient.http as http

    files = image_files(tmp_path, 6)
    pairs = [(files[i], files[j]) for i, j in ((0, 1), (2, 3), (4, 5), (0, 0), (1, 4))]
    verifier = Verifier(server.export.path, "ort-cpu", detect=False)  # the server takes the images as sent
    expected = [verifier.verify_files(a, b) for a, b in pairs]
    a = verifier.load_images([p[0] for p in pairs])
    b = verifier.load_images([p[1] for p in pairs])

    served = infer(http, server.address.http_url, MODEL_NAMES["pair"], {"image_a": a, "image_b": b}, ["score", "same"])
    np.testing.assert_allclose(served["score"].ravel(), [e.score for e in expected], rtol=1e-5, atol=1e-5)
    assert served["same"].ravel().tolist() == [e.same for e in expected]

    grpc_url = server.address.grpc_url
    features = infer(grpc, grpc_url, MODEL_NAMES["embedding"], {"images": np.concatenate([a, b])}, ["features"])
    fa, fb = np.split(features["features"], 2)
    compared = infer(grpc, grpc_url, MODEL_NAMES["compare"], {"features_a": fa, "features_b": fb}, ["score", "same"])
    np.testing.assert_allclose(compared["score"].ravel(), served["score"].ravel(), rtol=1e-5, atol=1e-5)


def test_a_request_of_the_wrong_shape_is_refused_by_the_server(server):
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    wrong = np.zeros((1, 8, 8, 3), np.uint8)
    with pytest.raises(InferenceServerException, match="shape|dims"):
        infer(http, server.address.http_url, MODEL_NAMES["pair"], {"image_a": wrong, "image_b": wrong}, ["score"])


def test_the_server_stops_and_frees_its_ports(small_export):
    _, export, _ = small_export("contrastive")
    address = ServerAddress("127.0.0.1", *free_ports(3))
    with Server(export, "ort-cpu", address):
        pass
    with Server(export, "ort-cpu", address) as again:  # nothing listens any more: a new server starts there
        assert again.triton is not None


def serve_command(export: Path, *ports: int) -> list[str]:
    import sys

    options = [f"--{kind}-port={port}" for kind, port in zip(("http", "grpc", "metrics"), ports, strict=True)]
    return [sys.executable, "-m", "siamese.cli.serve", "--export", str(export), *options]


def test_repeated_or_taken_ports_are_refused_at_once_in_one_line(small_export):
    import re
    import subprocess
    import time

    _, export, _ = small_export("contrastive")
    http, grpc, metrics = free_ports(3)
    with socket.socket() as taken:  # another program listens on the metrics port
        taken.bind(("127.0.0.1", metrics))
        taken.listen()
        cases = {
            (http, http, metrics): "--http-port and --grpc-port are both",
            (http, grpc, metrics): rf"cannot listen on 127.0.0.1:{metrics} \(--metrics-port\): Address already in use",
        }
        for ports, message in cases.items():
            started = time.monotonic()
            run = subprocess.run(
                serve_command(export, *ports), capture_output=True, text=True, timeout=120, check=False
            )
            assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
            assert re.search(message, run.stderr.strip().splitlines()[-1]), run.stderr
            assert time.monotonic() - started < 30  # refused before any server starts


def test_sigterm_stops_the_server_and_leaves_no_workspace_or_shared_memory(small_export, tmp_path):
    import os
    import signal
    import subprocess

    _, export, _ = small_export("contrastive")
    shared_memory = set(os.listdir("/dev/shm"))
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    server = subprocess.Popen(
        serve_command(export, *free_ports(3)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        printed = []
        for line in iter(server.stdout.readline, ""):  # Triton logs to stdout too: wait for our line
            printed.append(line)
            if line.startswith("serving "):
                break
        assert printed and printed[-1].startswith("serving "), server.stderr.read()
        assert any(tmp_path.iterdir())  # PyTriton's workspace and the export's verified copies
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 128 + signal.SIGTERM
        log = "".join(printed) + server.stdout.read() + server.stderr.read()
    finally:
        server.kill()
    assert "NVML" not in log and "Exit timeout expired" not in log  # no GPU metrics here; models unloaded in time
    # .ses: a 51-byte session id that the tritonserver binary keeps in $TMPDIR and reuses
    assert [p.name for p in tmp_path.iterdir() if p.name != ".ses"] == []
    assert set(os.listdir("/dev/shm")) - shared_memory == set()


def test_a_stopped_server_leaves_none_of_its_shared_memory_even_when_tritonserver_did_not(small_export):
    from siamese.backends.triton import server as serving

    _, export, _ = small_export("contrastive")
    running = Server(export, "ort-cpu", ServerAddress("127.0.0.1", *free_ports(3))).start()
    prefix = serving._shared_memory_prefix(running.triton)
    regions = sorted(Path("/dev/shm").glob(f"{prefix}*"))
    assert prefix.startswith("pytrtion") and regions  # the stubs' regions, under PyTriton's prefix
    tritonserver = running.triton._triton_server
    pid = tritonserver._tritonserver_running_cmd.process.pid
    stubs = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for process in [pid, *map(int, stubs)]:  # as when a loaded machine outlasts PyTriton's patience
        os.kill(process, signal.SIGKILL)
    tritonserver.stop = lambda: None
    running.stop()
    assert [r for r in regions if r.exists()] == []


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_bench_measures_the_server_beside_the_in_process_runtime(server, scheme):
    from bench.harness import BenchConfig, run_benchmark
    from bench.report import table
    from bench.timing import TimingConfig

    port = server.address.http_port if scheme == "http" else server.address.grpc_port
    cfg = BenchConfig(
        export=server.export.path,
        runtimes=["ort-cpu"],
        batches=[1, 4],
        timing=TimingConfig(warmup=1, warmup_seconds=0, duration=0.3, repeats=1),
        parity_pairs=8,
        random_pairs=4,
        triton=f"{scheme}://127.0.0.1:{port}",
        concurrency=[1, 3],
    )
    result = run_benchmark(cfg, log=lambda m: None)
    local, served = result.runtimes
    assert served.error is None, served.error
    assert (local.name, local.status, served.name, served.status) == ("ort-cpu", "ok", f"triton-{scheme}", "ok")
    assert served.parity.passed and served.parity.decisions.pairs == 12  # the server answers as the export does
    assert [(x.concurrency, x.batch) for x in served.load] == [(1, 1), (3, 1), (1, 4), (3, 4)]
    assert all(x.requests >= x.concurrency and x.pairs_per_s > 0 for x in served.load)
    assert f"| triton-{scheme} | 3 | 4 |" in table(result)


def test_a_server_that_is_not_there_is_unavailable_and_a_bad_url_refused(small_export):
    from siamese.backends.triton.client import TritonClient, parse_url
    from siamese.core.errors import SiameseError

    _, export, _ = small_export("contrastive")
    folder = ExportFolder.open(export)
    (port,) = free_ports(1)
    assert "no live Triton server" in TritonClient(f"127.0.0.1:{port}").unavailable(folder)
    assert parse_url("grpc://localhost:8001") == ("grpc", "localhost:8001")
    for bad in ("ftp://h:1", "http://host", "http://h:1/v2"):
        with pytest.raises(SiameseError, match="expected http"):
            parse_url(bad)


def test_siamese_serve_refuses_a_folder_that_is_no_export_in_one_line(tmp_path):
    from click.testing import CliRunner

    from siamese.cli.serve import main as serve

    result = CliRunner().invoke(serve, ["--export", str(tmp_path), "--http-port", "0"])
    assert result.exit_code == 2 and "--http-port" in result.output  # ports are checked at parse time
    for option, value in (("--threads", 2**64), ("--max-batch", 2**31)):
        result = CliRunner().invoke(serve, ["--export", str(tmp_path), option, str(value)])
        assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output
    result = CliRunner().invoke(serve, ["--export", str(tmp_path)])
    assert result.exit_code == 1 and "not an export folder" in result.output
    assert "Traceback" not in result.output
