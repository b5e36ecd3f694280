"""The benchmark harness: parity of every registered runtime, failure detection, output schema."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from bench.cli import main as bench_main
from bench.harness import BenchConfig, bench_runtime, run_benchmark
from bench.parity import check_parity, parity_inputs, run_outputs
from bench.report import regressions
from bench.runtimes import REFERENCE, RUNTIMES, create
from bench.runtimes.base import Runtime
from bench.timing import TimingConfig
from siamese.artifacts import ExportFolder
from siamese.model import flops_per_image

FAST_TIMING = TimingConfig(warmup=1, warmup_seconds=0.0, iterations=3)


@pytest.fixture(scope="module")
def setup(small_export, lfw_dir):
    _, dest, _ = small_export("contrastive")
    export = ExportFolder.open(dest)
    inputs = parity_inputs(export, lfw_dir / "pairsDevTest.txt", n_pairs=24, n_random=8)
    ref = create(REFERENCE)
    ref.load(export)
    return export, inputs, run_outputs(ref, inputs)


@pytest.mark.parametrize("name", list(RUNTIMES))
def test_every_registered_runtime_matches_the_reference(setup, name):
    export, inputs, reference = setup
    runtime = create(name)
    reason = runtime.unavailable()
    if reason:
        pytest.skip(f"{name} unavailable here: {reason}")
    runtime.load(export)
    result = check_parity(
        run_outputs(runtime, inputs),
        reference,
        inputs.labels,
        runtime.precision,
        export.metadata["threshold"],
    )
    assert result["passed"], result
    assert result["accuracy_delta"] == pytest.approx(0.0, abs=0.1)
    features = next(o for o in result["outputs"] if o["name"] == "features")
    assert features["min_cosine"] > (0.9999 if runtime.precision == "fp32" else 0.99)


class OffByOnePercent(Runtime):
    """A deliberately wrong runtime: the reference scaled by 1.01, decisions recomputed."""

    name = "wrong"

    def __init__(self, threshold):
        self.inner = create(REFERENCE)
        self.threshold = threshold

    def load(self, export):
        self.inner.load(export)

    def embed(self, images):
        return self.inner.embed(images) * 1.01

    def pair(self, a, b):
        score = self.inner.pair(a, b)["score"] * 1.01
        return {"score": score, "same": score < self.threshold}


def test_a_wrong_runtime_fails_parity(setup):
    export, inputs, reference = setup
    entry = bench_runtime(
        OffByOnePercent(export.metadata["threshold"]),
        export,
        inputs,
        reference,
        BenchConfig(timing_enabled=False),
        1.0,
        {},
    )
    assert entry["available"] and not entry["parity"]["passed"]
    failed = {o["name"] for o in entry["parity"]["outputs"] if not o["passed"]}
    assert {"features", "score"} <= failed


def test_nan_always_fails(setup):
    export, inputs, reference = setup
    actual = {k: v.copy() for k, v in reference.items()}
    actual["features"][0, 0] = np.nan
    result = check_parity(actual, reference, inputs.labels, "bf16", export.metadata["threshold"])
    assert not result["passed"]
    assert not next(o for o in result["outputs"] if o["name"] == "features")["finite"]


def test_unavailable_runtime_is_listed_with_its_reason(setup):
    export, inputs, reference = setup

    class Missing(Runtime):
        name = "missing"

        def unavailable(self):
            return "not installed"

        load = embed = pair = None

    entry = bench_runtime(Missing(), export, inputs, reference, BenchConfig(), 1.0, {})
    assert entry == {
        "name": "missing",
        "precision": "fp32",
        "device": "cpu",
        "available": False,
        "reason": "not installed",
    }


@pytest.fixture(scope="module")
def result(setup, tmp_path_factory):
    export, _, _ = setup
    tmp = tmp_path_factory.mktemp("bench")
    cfg = BenchConfig(
        export=export.path,
        runtimes=["eager-fp32-cpu", "ort-cpu", "ort-cuda"],
        batches=[1, 2],
        timing=FAST_TIMING,
        parity_pairs=8,
        random_pairs=4,
        save_inputs=tmp / "ref.npz",
    )
    return run_benchmark(cfg, log=lambda m: None), tmp / "ref.npz"


def test_result_schema(result):
    result, _ = result
    assert result["schema"] == "siamese-bench/1" and result["passed"] is True
    for key in ("cpu", "cores", "torch_threads", "gpu", "versions", "git_commit"):
        assert key in result["machine"]
    assert result["flops_per_pair"] == 2 * flops_per_image(16)
    names = [r["name"] for r in result["runtimes"]]
    assert names == ["eager-fp32-cpu", "ort-cpu", "ort-cuda"]
    cuda = result["runtimes"][2]
    assert cuda["available"] is False and "CUDAExecutionProvider" in cuda["reason"]
    for entry in result["runtimes"][:2]:
        assert [t["batch"] for t in entry["timing"]] == [1, 2]
        for t in entry["timing"]:
            assert set(t["latency_ms"]) == {"min", "median", "p90", "p99", "max"}
            assert t["iterations"] == 3 and t["pairs_per_s"] > 0 and 0 < t["peak_share"]
        assert entry["parity"]["passed"]
    json.dumps(result)  # serialisable as is


def test_saved_reference_reloads_for_another_machine(result, setup):
    _, ref_path = result
    export, _, _ = setup
    cfg = BenchConfig(export=export.path, runtimes=["ort-cpu"], load_reference=ref_path, timing_enabled=False)
    again = run_benchmark(cfg, log=lambda m: None)
    assert again["passed"] and "loaded from" in again["parity_inputs"]["reference"]


def test_compare_flags_a_planted_regression(result, tmp_path):
    result, _ = result
    baseline = json.loads(json.dumps(result))
    for entry in baseline["runtimes"]:
        for t in entry.get("timing") or []:
            t["latency_ms"]["median"] /= 2  # the baseline was twice as fast
    found = regressions(result, baseline, threshold=0.1)
    assert len(found) == 4 and all("+" in f for f in found)
    assert regressions(result, result, threshold=0.1) == []


def test_cli_end_to_end_with_report_and_compare(setup, tmp_path):
    export, _, _ = setup
    args = [
        "--export",
        str(export.path),
        "--runtimes",
        "eager-fp32-cpu,ort-cpu",
        "--batch",
        "1,2",
        "--iterations",
        "3",
        "--warmup",
        "1",
        "--warmup-seconds",
        "0",
        "--parity-pairs",
        "4",
        "--random-pairs",
        "2",
    ]
    runner = CliRunner()
    ok = runner.invoke(bench_main, [*args, "--json", str(tmp_path / "b.json"), "--report", str(tmp_path / "rep")])
    assert ok.exit_code == 0, ok.output
    assert "| ort-cpu | 2 |" in ok.output
    assert (tmp_path / "rep" / "report.md").is_file() and (tmp_path / "rep" / "bench.png").is_file()
    baseline = json.loads((tmp_path / "b.json").read_text())
    for entry in baseline["runtimes"]:
        for t in entry["timing"]:
            t["latency_ms"]["median"] /= 100
    (tmp_path / "fast.json").write_text(json.dumps(baseline))
    regressed = runner.invoke(bench_main, [*args, "--compare", str(tmp_path / "fast.json")])
    assert regressed.exit_code == 1 and "regression" in regressed.output
    bad = runner.invoke(bench_main, [*args, "--runtimes", "nope"])
    assert bad.exit_code == 1 and "unknown runtime" in bad.output


CPU_RUNTIMES = [n for n in RUNTIMES if not n.endswith(("cuda", "tensorrt"))]


@pytest.mark.parametrize("name", CPU_RUNTIMES)
def test_benchmark_runtime(benchmark, setup, name):
    """pytest-benchmark figures for each CPU runtime at batch 8 (small network); no timed assertion."""
    export, inputs, _ = setup
    runtime = create(name)
    if runtime.unavailable():
        pytest.skip(runtime.unavailable())
    runtime.load(export)
    call = runtime.timed_call(inputs.image_a[:8], inputs.image_b[:8])
    call()  # compile / first-run work stays out of the figures
    benchmark(call)


@pytest.mark.slow
def test_full_size_network_parity_on_real_pairs(tmp_path, lfw_dir):
    """The 128x128 spec network: ONNX Runtime and TorchScript against eager on real LFW pairs."""
    from conftest import make_test_checkpoint

    from siamese.export import export_checkpoint

    ckpt = make_test_checkpoint(tmp_path / "c.pt", "contrastive", 128)
    dest, _ = export_checkpoint(
        ckpt, tmp_path / "exports", formats=["onnx", "torchscript"], n_pairs=4, log=lambda m: None
    )
    cfg = BenchConfig(
        export=dest,
        runtimes=["eager-fp32-cpu", "ort-cpu", "torchscript-cpu"],
        pairs=lfw_dir / "pairsDevTest.txt",
        parity_pairs=8,
        random_pairs=2,
        timing_enabled=False,
    )
    result = run_benchmark(cfg, log=lambda m: None)
    assert result["passed"] and result["flops_per_pair"] == pytest.approx(6.62e9, rel=1e-3)
    assert all(r["available"] for r in result["runtimes"])
