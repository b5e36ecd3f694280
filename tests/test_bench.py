"""The benchmark harness: every registered runtime's parity, statuses, crashes, result schema, reports."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bench.cli import main as bench_cli
from bench.harness import BenchConfig, bench_runtime, run_benchmark
from bench.report import regressions
from bench.result import SCHEMA, BenchResult
from bench.timing import TimingConfig
from siamese.artifacts.folder import ExportFolder, ExportPolicy
from siamese.backends import REFERENCE, RUNTIMES, RunnerSpec, create
from siamese.backends.openvino.runtime import OpenVino
from siamese.core.errors import SiameseError
from siamese.core.model import flops_per_image
from siamese.parity.inputs import check_runner, parity_inputs, run_outputs

FAST_TIMING = TimingConfig(warmup=1, warmup_seconds=0.0, iterations=2, repeats=2)


@pytest.fixture(scope="module")
def setup(small_export):
    """The 16x16 export and random pairs: the runtime matrix needs no LFW."""
    _, dest, _ = small_export("contrastive")
    export = ExportFolder.open(dest, ExportPolicy(trust_code=True))  # made by the test itself
    inputs = parity_inputs(export.image_size, None, n_pairs=0, n_random=24, crop=1.0)
    ref = create(REFERENCE)
    ref.load(export, ("embedding", "pair"))
    return export, inputs, run_outputs(ref, inputs)


def expected_unavailable(runner, export) -> bool:
    """What this machine really lacks for the runner, judged independently of the runner's own check."""
    import shutil

    import torch

    abilities = runner.abilities
    if abilities.artifact != "weights" and abilities.artifact not in export.formats():
        return True
    if abilities.loads_code and not export.trusted:
        return True
    if isinstance(runner, OpenVino):
        if importlib.util.find_spec("openvino") is None:
            return True
    elif abilities.artifact == "onnx":
        import onnxruntime

        from siamese.backends.onnx.runtime import PROVIDERS

        return PROVIDERS[runner.provider] not in onnxruntime.get_available_providers()
    if abilities.device == "cuda":
        return not torch.cuda.is_available()
    if abilities.precision in ("fp16", "tf32"):  # CPU: autocast fp16 and TF32 are CUDA's
        return True
    if abilities.precision == "bf16" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return True  # no AVX-512 / AMX: oneDNN has no bf16 kernels
    return runner.name.startswith("compile") and not (shutil.which("c++") or shutil.which("g++"))


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.gpu) if create(n).abilities.device == "cuda" else n for n in RUNTIMES]
)
def test_every_registered_runtime_matches_the_reference_or_says_why_not(setup, name):
    export, inputs, reference = setup
    runner = create(name)
    reason = runner.unavailable(export)
    assert bool(reason) == expected_unavailable(runner, export), reason
    if reason:
        pytest.skip(f"{name} unavailable here: {reason}")
    runner.load(export, ("embedding", "pair"), [1, 2, 32])
    try:
        meta = export.metadata
        result = check_runner(
            runner, inputs, reference, meta.threshold, meta.dtype, score_is_distance=not meta.higher_is_same
        )
    finally:
        runner.close()
    assert result.passed, result.failures()
    features = next(o for o in result.outputs if o.name == "features")
    assert features.min_cosine > (0.9999 if runner.abilities.precision == "fp32" else 0.99)


def test_the_reference_never_loads_code(setup):
    export, _, _ = setup
    runner = create(REFERENCE)
    assert runner.abilities.artifact == "weights" and not runner.abilities.loads_code


def fake(cls: str, **kwargs) -> RunnerSpec:
    return RunnerSpec("fake_runners", cls, kwargs)


@pytest.mark.parametrize("claim, factor", [("fp16", 1.0099), ("bf16", 1.049)])
def test_a_wrong_runtime_fails_at_its_claimed_precision(setup, claim, factor):
    export, inputs, reference = setup
    runner = fake("Scaled", factor=factor, claim=claim).create("scaled")
    entry = bench_runtime(runner, export, inputs, reference, BenchConfig(timing_enabled=False), None, 1.0)
    assert entry.status == "failed" and entry.error.startswith("parity:")
    assert {o.name for o in entry.parity.outputs if not o.passed} >= {"features", "score"}


def test_a_raising_runtime_is_failed_closed_and_the_others_still_run(setup, tmp_path):
    from fake_runners import OutOfMemory

    export, _, _ = setup
    specs = {"oom": fake("OutOfMemory"), "ort-cpu": RUNTIMES["ort-cpu"]}
    cfg = BenchConfig(export=export.path, batches=[2], timing=FAST_TIMING, random_pairs=4, parity_pairs=0)
    result = run_benchmark(cfg, log=lambda m: None, specs=specs)
    oom, ort = result.runtimes
    assert oom.status == "failed" and "CUDA out of memory" in oom.error and OutOfMemory.closed == ["oom"]
    assert ort.status == "ok" and ort.timing and not result.passed


def test_a_load_bug_is_failed_not_unavailable(setup):
    export, inputs, reference = setup
    entry = bench_runtime(fake("BrokenLoad").create("broken"), export, inputs, reference, BenchConfig(), None, 1.0)
    assert entry.status == "failed" and "KeyError" in entry.error


def test_a_segfaulting_runtime_in_its_child_process_is_reported(setup, tmp_path):
    export, _, _ = setup
    specs = {"segv": fake("Segfaulting"), "ort-cpu": RUNTIMES["ort-cpu"]}
    cfg = BenchConfig(
        export=export.path,
        batches=[2],
        timing=FAST_TIMING,
        random_pairs=4,
        parity_pairs=0,
        isolate=True,
        json_path=tmp_path / "b.json",
    )
    result = run_benchmark(cfg, log=lambda m: None, specs=specs)
    segv, ort = result.runtimes
    assert segv.status == "failed" and "SIGSEGV" in segv.error
    assert ort.status == "ok" and ort.parity.passed and [t.batch for t in ort.timing] == [2]


@pytest.fixture(scope="module")
def result(setup, tmp_path_factory):
    export, _, _ = setup
    tmp = tmp_path_factory.mktemp("bench")
    cfg = BenchConfig(
        export=export.path,
        runtimes=["eager-fp32-cpu", "ort-cpu", "ort-cuda"],
        batches=[1, 2],
        timing=FAST_TIMING,
        parity_pairs=0,
        random_pairs=4,
        save_inputs=tmp / "ref.npz",
    )
    return run_benchmark(cfg, log=lambda m: None), tmp / "ref.npz"


def test_result_schema_round_trips(result):
    result, _ = result
    assert result.schema == SCHEMA and result.passed
    assert result.flops_per_pair == 2 * flops_per_image(16)
    assert "eager-fp32-cpu" in result.reference and "weights" in result.reference
    assert result.machine.cores >= 1 and result.machine.versions["torch"] and result.export.variant == "contrastive"
    assert BenchResult.from_dict(result.to_dict()) == result  # typed records, read back as written
    assert [r.name for r in result.runtimes] == ["eager-fp32-cpu", "ort-cpu", "ort-cuda"]
    for entry in result.runtimes[:2]:
        assert entry.status == "ok" and [t.batch for t in entry.timing] == [1, 2]
        for t in entry.timing:
            assert t.iterations == 4 and t.pairs_per_s > 0 and t.peak_share > 0 and t.first_call_ms > 0
    assert all(p.label.startswith("torch GEMM") for p in result.peaks.values())
    again = BenchResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result


@pytest.mark.gpu
def test_ort_cuda_status_is_the_environments_truth(result):
    import onnxruntime

    result, _ = result
    cuda = result.runtimes[2]
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        assert cuda.status == "ok", cuda.error
    else:
        assert cuda.status == "unavailable" and "CUDAExecutionProvider" in cuda.reason


def test_saved_reference_reloads_for_another_machine(result, setup):
    _, ref_path = result
    export, _, _ = setup
    cfg = BenchConfig(export=export.path, runtimes=["ort-cpu"], load_reference=ref_path, timing_enabled=False)
    again = run_benchmark(cfg, log=lambda m: None)
    assert again.passed and "loaded from" in again.reference


@pytest.mark.parametrize("graph", ["embedding", "pair"])
def test_polygraphy_checks_the_onnx_artifacts_against_the_saved_reference(result, setup, graph):
    """The field's own parity tool reads our saved inputs and outputs and agrees, and catches a wrong reference."""
    _, ref_path = result
    export, _, _ = setup
    stem = ref_path.with_suffix("")
    inputs, outputs = f"{stem}.{graph}.inputs.json", f"{stem}.{graph}.outputs.json"
    polygraphy = str(Path(sys.executable).parent / "polygraphy")
    command = [polygraphy, "run", str(export.path / f"{graph}.onnx"), "--onnxrt"]
    command += ["--load-inputs", inputs, "--load-outputs", outputs, "--atol", "1e-4", "--rtol", "1e-4"]
    ok = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    assert "PASSED" in ok.stdout + ok.stderr

    from polygraphy.comparator import RunResults

    wrong = RunResults.load(outputs)
    for _, iterations in wrong.items():
        for iteration in iterations:
            for name in iteration.keys():
                if iteration[name].dtype != np.bool_:
                    iteration[name] = iteration[name] * 1.01
    wrong.save(outputs + ".wrong.json")
    command[command.index(outputs)] = outputs + ".wrong.json"
    bad = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0


def _timed(median, fastest):
    from bench.result import RuntimeResult, TimingResult

    latency = {"median": median, "min": fastest, "p90": median, "p99": median, "max": median}
    return RuntimeResult("ort-cpu", "ok", {}, timing=[TimingResult(1, 10, latency, 0.05, 1, 1, None, 1)])


def test_compare_flags_code_that_got_slower_not_a_loaded_machine(result):
    result, _ = result
    base = BenchResult.from_dict(result.to_dict())
    base.runtimes = [_timed(10.0, 9.0)]
    loaded, slower, failing = (BenchResult.from_dict(result.to_dict()) for _ in range(3))
    loaded.runtimes = [_timed(13.0, 9.3)]  # the median stretched by other work, the fastest call not
    slower.runtimes = [_timed(15.0, 13.5)]  # +50%, fastest call and median alike
    failing.runtimes = [_timed(10.0, 9.0)]
    failing.runtimes[0].status = "failed"
    assert regressions(loaded, base, 0.10) == []
    assert len(found := regressions(slower, base, 0.10)) == 1 and "(+50%)" in str(found[0])
    assert (found[0].runtime, found[0].batch) == ("ort-cpu", 1)
    assert "fails now" in str(regressions(failing, base, 0.10)[0])
    slower.runtimes[0].timing[0].others_load = 0.5  # another process held one core of two meanwhile
    assert "NOT JUDGED: other work held 50% now of the CPUs" in str(regressions(slower, base, 0.10)[0])


def test_compare_times_a_suspected_regression_again_and_reports_only_one_that_holds(
    contrastive_export, monkeypatch, tmp_path
):
    """A few seconds of a busy machine during one pass is not a regression: siamese-bench times
    the suspects again and judges the faster of the two passes; code that got slower stays slower."""
    from fake_runners import SlowPatch

    from bench.harness import main

    timing = TimingConfig(warmup=1, warmup_seconds=0, iterations=4, repeats=2)
    cfg = BenchConfig(export=contrastive_export, runtimes=["patchy-cpu"], batches=[1], timing=timing)
    cfg = replace(cfg, parity_pairs=0, random_pairs=2)
    # a 25 ms call, so that the few timed calls' own noise stays well under the 10% limit
    monkeypatch.setitem(RUNTIMES, "patchy-cpu", fake("SlowPatch", delay=0.02, extra=0.05))
    SlowPatch.seen = 0
    baseline = main(cfg, echo=lambda m: None, log=lambda m: None)
    (base_json := tmp_path / "baseline.json").write_text(json.dumps(baseline.to_dict()))
    logged = []
    SlowPatch.calls = SlowPatch.seen  # every call of one pass, parity to the last timed call
    main(replace(cfg, baseline=base_json), echo=logged.append, log=logged.append)
    assert any("timing again to confirm: patchy-cpu batch 1" in m for m in logged), logged
    assert any("no regression against" in m for m in logged), logged
    SlowPatch.calls = 10_000  # every pass
    with pytest.raises(SiameseError, match="patchy-cpu batch 1: fastest call"):
        main(replace(cfg, baseline=base_json), echo=lambda m: None, log=lambda m: None)


def test_compare_refuses_a_baseline_of_another_export_machine_threads_or_batches(result):
    from bench.report import incomparable

    result, _ = result
    assert incomparable(result, BenchResult.from_dict(result.to_dict())) == []
    other = BenchResult.from_dict(result.to_dict())
    other.export.manifest_sha256 = "0" * 64
    other.machine.cpu = "another CPU"
    other.settings = {**other.settings, "threads": 7, "batches": [999]}
    reasons = " | ".join(incomparable(result, other))
    for expected in (
        "another export",
        "another machine (cpu 'another CPU'",
        "other --threads (7",
        "no batch size in common",
    ):
        assert expected in reasons, reasons


@pytest.mark.skipif(os.cpu_count() is None, reason="needs to know the cores to load them")
def test_repeated_runs_on_a_loaded_machine_flag_nothing_and_a_30_percent_slowdown_always(
    contrastive_export, monkeypatch
):
    """The --compare gate for real: a runtime whose every call sleeps 5 ms (plus its compute) is
    timed idle as the baseline; three runs beside a process holding a core blame nothing (they
    pass, or say the machine was too busy to judge), and three runs 30% slower (6.5 ms) are
    flagged every time."""
    from bench.harness import confirmed_regressions
    from bench.timing import TimingConfig

    timing = TimingConfig(warmup=2, warmup_seconds=0, duration=0.5, repeats=3)
    cfg = BenchConfig(
        export=contrastive_export, runtimes=["slowed-cpu"], batches=[1], timing=timing, parity_pairs=0, random_pairs=2
    )

    def judged(delay: float) -> tuple[float, list[str]]:
        monkeypatch.setitem(RUNTIMES, "slowed-cpu", fake("Slowed", delay=delay))
        result = run_benchmark(cfg, log=lambda m: None)
        found = confirmed_regressions(cfg, result, baseline, log=lambda m: None)
        return result.runtimes[0].timing[0].others_load, [str(r) for r in found]

    monkeypatch.setitem(RUNTIMES, "slowed-cpu", fake("Slowed", delay=0.005))
    baseline = run_benchmark(cfg, log=lambda m: None)
    assert baseline.runtimes[0].timing[0].others_load < 0.25  # the idle machine is seen as idle
    call_ms = baseline.runtimes[0].timing[0].latency_ms["median"]
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])]  # a shared machine's neighbour
    try:
        loaded = [judged(0.005) for _ in range(3)]
    finally:
        for hog in hogs:
            hog.kill()
    assert all(load > 0.25 for load, _ in loaded), loaded  # one core of the machine's was the hog's
    assert all("NOT JUDGED" in message for _, found in loaded for message in found), loaded
    slowed = [judged(0.005 + 0.3 * call_ms / 1000)[1] for _ in range(3)]
    assert all(len(found) == 1 and "slowed-cpu batch 1: fastest call" in found[0] for found in slowed), slowed
    assert not any("NOT JUDGED" in found[0] for found in slowed), slowed


def test_the_design_card_sequence_works_on_an_onnx_only_export(tmp_path):
    """siamese-export --format onnx, then siamese-bench: eager runs from the export's weights."""
    from conftest import make_test_checkpoint

    from siamese.cli import export as export_cli

    ckpt = make_test_checkpoint(tmp_path / "runs" / "lfw" / "contrastive" / "checkpoint.pt", "contrastive", 16)
    (ckpt.parent / "summary.json").write_text("{}")
    runner = CliRunner()
    exported = runner.invoke(
        export_cli.main,
        ["--runs", str(tmp_path / "runs"), "--format", "onnx", "--out", str(tmp_path / "exports"), "--untrained"],
    )
    assert exported.exit_code == 0, exported.output
    args = ["--export", str(tmp_path / "exports" / "lfw-contrastive-fp32"), "--batch", "2"]
    args += ["--runtimes", "eager-fp32-cpu,ort-cpu,torchscript-cpu", "--iterations", "2", "--repeats", "1"]
    args += ["--warmup", "1", "--warmup-seconds", "0", "--random-pairs", "4", "--parity-pairs", "0"]
    args += ["--json", str(tmp_path / "b.json"), "--report", str(tmp_path / "report")]
    bench = runner.invoke(bench_cli, args)
    assert bench.exit_code == 0, bench.output
    assert "| ort-cpu | ok | 2 |" in bench.output and "| eager-fp32-cpu | ok | 2 |" in bench.output
    assert "| torchscript-cpu | unavailable |" in bench.output and "no torchscript artifacts" in bench.output
    assert (tmp_path / "report" / "report.md").is_file() and (tmp_path / "report" / "bench.png").is_file()
    saved = BenchResult.from_dict(json.loads((tmp_path / "b.json").read_text()))
    assert [r.status for r in saved.runtimes] == ["ok", "ok", "unavailable"]


def test_cli_exits_non_zero_when_a_runtime_fails_and_still_writes_the_json(setup, tmp_path, monkeypatch):
    export, _, _ = setup
    monkeypatch.setitem(RUNTIMES, "scaled-cpu", fake("Scaled", factor=1.05, claim="fp32"))  # the one registry
    args = ["--export", str(export.path), "--runtimes", "ort-cpu,scaled-cpu", "--no-timing"]
    args += ["--random-pairs", "4", "--parity-pairs", "0", "--json", str(tmp_path / "b.json")]
    out = CliRunner().invoke(bench_cli, args)
    assert out.exit_code == 1 and "scaled-cpu failed: parity" in out.output, out.output
    statuses = [r["status"] for r in json.loads((tmp_path / "b.json").read_text())["runtimes"]]
    assert statuses == ["ok", "failed"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--runtimes", "nope"], "unknown runtime"),
        (["--batch", "0,a"], "comma-separated list of integers"),
        (["--batch", ","], "at least one positive integer"),
        (["--tolerance", "rtol=abc"], "expected KEY=VALUE"),
        (["--tolerance", "score=1e-3"], "expected KEY=VALUE"),
    ],
)
def test_bad_options_are_refused_at_parse_time(args, message):
    out = CliRunner().invoke(bench_cli, args)
    assert out.exit_code == 2 and message in out.output and "Traceback" not in out.output


CPU_RUNTIMES = [n for n in RUNTIMES if n.endswith("-cpu")]


@pytest.mark.parametrize("name", CPU_RUNTIMES)
def test_benchmark_runtime(benchmark, setup, name):
    """pytest-benchmark figures for each CPU runtime at batch 8 (small network); no timed assertion."""
    export, inputs, _ = setup
    runner = create(name)
    if runner.unavailable(export):
        pytest.skip(runner.unavailable(export))
    runner.load(export, ("embedding", "pair"), [8])
    call = runner.timed_call(inputs.image_a[:8], inputs.image_b[:8])
    call()  # compile / first-run work stays out of the figures
    benchmark(call)
    runner.close()


@pytest.mark.slow
def test_full_size_network_parity_on_real_pairs(tmp_path, lfw_dir):
    """The 128x128 spec network: ONNX Runtime and TorchScript against eager on real LFW pairs."""
    from conftest import make_test_checkpoint

    from siamese.tasks.export import export_checkpoint

    ckpt = make_test_checkpoint(tmp_path / "c.pt", "contrastive", 128)
    dest, _ = export_checkpoint(
        ckpt, tmp_path / "exports", formats=["onnx", "torchscript"], n_pairs=4, log=lambda m: None, untrained=True
    )
    cfg = BenchConfig(
        export=dest,
        runtimes=["eager-fp32-cpu", "ort-cpu", "torchscript-cpu"],
        pairs=lfw_dir / "pairsDevTest.txt",
        parity_pairs=8,
        random_pairs=2,
        timing_enabled=False,
        policy=ExportPolicy(trust_code=True),  # the test's own export
    )
    result = run_benchmark(cfg, log=lambda m: None)
    assert result.passed and result.flops_per_pair == pytest.approx(6.62e9, rel=1e-3)
    assert all(r.status == "ok" for r in result.runtimes)
    assert "8 labelled pairs" in result.parity_inputs


def test_unreadable_baseline_is_one_line(tmp_path):
    from bench.harness import main

    (tmp_path / "old.json").write_text('{"schema": "siamese-bench/1"}')
    with pytest.raises(SiameseError, match="re-run siamese-bench --json"):
        main(BenchConfig(baseline=tmp_path / "old.json"))


def _benchmarking_children(pid: int) -> list[int]:
    """multiprocessing's spawned workers of `pid` (not its resource tracker)."""
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        return [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads child processes from Linux's /proc")
@pytest.mark.parametrize(
    "how, after",
    [(signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0), (signal.SIGTERM, 0.0)],
    ids=["stopped-while-benchmarking", "killed-while-benchmarking", "stopped-while-the-child-starts"],
)
def test_an_isolated_benchmark_ends_with_its_parent(contrastive_export, how, after):
    """A benchmarking child never outlives siamese-bench, whether it is stopped (SIGTERM) or killed,
    and a stop while the child is still starting leaves no traceback from it either."""
    command = [sys.executable, "-m", "bench.cli", "--export", str(contrastive_export), "--isolate"]
    command += ["--runtimes", "ort-cpu", "--batch", "1", "--duration", "120", "--parity-pairs", "0"]
    parent = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while (
            not (children := [c for c in _benchmarking_children(parent.pid) if _alive(c)])
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert children, "no child process started"
        time.sleep(after)  # 3 s: the child is benchmarking; 0 s: it is still importing its modules
        parent.send_signal(how)
        code = parent.wait(timeout=60)
        deadline = time.monotonic() + 30
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(c) for c in children), "the child outlived its parent"
    finally:
        parent.kill()
    if how == signal.SIGTERM:
        assert code == 128 + signal.SIGTERM and "Traceback" not in parent.stderr.read()


def test_without_an_export_bench_stops_and_names_the_commands(tmp_path):
    """No silent fallback: random weights are benchmarked only with --untrained, and said so."""
    cfg = BenchConfig(exports_root=tmp_path / "exports", runs_root=tmp_path / "runs", runtimes=["ort-cpu"])
    with pytest.raises(SiameseError, match=r"no export under .*make train, then siamese-export --format onnx"):
        run_benchmark(cfg, log=lambda m: None)
    assert not (tmp_path / "exports").exists() and not (tmp_path / "runs").exists()


def test_the_hardware_peak_states_its_assumptions_and_is_never_guessed():
    from bench.machine import cpu_flops_per_cycle

    assert cpu_flops_per_cycle("GenuineIntel", {"avx512f", "avx2", "fma"}, "fp32")[0] == 64
    assert cpu_flops_per_cycle("AuthenticAMD", {"avx512f", "avx2", "fma"}, "fp32")[0] == 32  # Zen 4: 256-bit pipes
    assert cpu_flops_per_cycle("GenuineIntel", {"avx2", "fma"}, "fp32")[0] == 32
    assert cpu_flops_per_cycle("AuthenticAMD", {"avx512f", "avx512_bf16"}, "bf16")[0] == 64
    assert cpu_flops_per_cycle("GenuineIntel", {"avx512f", "amx_bf16"}, "bf16")[0] == 1024
    assert cpu_flops_per_cycle("GenuineIntel", {"sse4_2"}, "fp32") is None  # unknown: no figure, not a guess
    assert cpu_flops_per_cycle("GenuineIntel", {"avx2", "fma"}, "bf16") is None
    assert cpu_flops_per_cycle("GenuineIntel", {"avx512f", "amx_int8"}, "int8")[0] == 2048
    assert cpu_flops_per_cycle("AuthenticAMD", {"avx512f", "avx512_vnni"}, "int8")[0] == 128  # Zen 4 VNNI
    assert cpu_flops_per_cycle("GenuineIntel", {"avx2", "fma"}, "int8") is None


def test_a_runtime_of_an_int8_export_is_a_share_of_the_int8_limit():
    from bench.result import arithmetic_key

    assert arithmetic_key("cpu", "fp32", "int8", "openvino") == "cpu-int8"  # openvino-ir-cpu runs NNCF's kernels
    assert arithmetic_key("cpu", "fp32", "int8", "weights") == "cpu-fp32"  # eager: the fp32 weights
    assert arithmetic_key("cpu", "bf16", "fp32", "onnx") == "cpu-bf16"


def test_the_table_shows_both_the_hardware_share_and_the_gemm_share(result):
    from bench.report import header, table
    from bench.result import Peak

    result, _ = result
    shown = BenchResult.from_dict(result.to_dict())
    shown.hardware_peaks = {"cpu-fp32": Peak(1e6, "a machine of 1 PFLOP/s, for the test")}
    text = table(shown)
    assert "| % hw peak | % GEMM |" in text
    row = next(line for line in text.splitlines() if line.startswith("| ort-cpu | ok |"))
    assert row.split(" | ")[8] == "0%"  # a tiny share of an enormous limit
    assert "% hw peak is against the hardware's limit: cpu-fp32: 1000000 GFLOP/s" in header(shown)
