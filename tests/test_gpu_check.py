"""bench/gpu_check.sh --dry: the one-call GPU check runs end to end without a GPU, so it cannot
rot before one is lent. CUDA rows must say why they are unavailable; every other step is real."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: run bench/gpu_check.sh for real")
def test_the_dry_gpu_check_runs_every_step_and_says_why_cuda_is_unavailable(tmp_path, lfw_dir, cache_dir):
    pack = tmp_path / "pack"
    made = subprocess.run(
        [sys.executable, "-m", "siamese.cli.data", "pack", str(pack), "--data", str(lfw_dir), "--image-size", "16"]
        + ["--cache", str(cache_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0 and "training identities at 16 px" in made.stdout, made.stderr[-2000:]
    out = tmp_path / "gpu-check"
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), str(out), "--dry", "--pack", str(pack)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )
    bench_log = out / "04-bench.log"
    assert done.returncode == 0, (
        done.stdout[-3000:] + done.stderr[-3000:] + (bench_log.read_text()[-3000:] if bench_log.is_file() else "")
    )
    steps = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("0*.json")) if p.stem[3:] != "bench-result"}
    assert list(steps) == ["01-environment", "02-gpu-tests", "03-training", "04-bench", "05-profile"], list(steps)
    assert {s["schema"] for s in steps.values()} == {"siamese-gpu-check/1"}

    env_facts = steps["01-environment"]["facts"]
    assert steps["01-environment"]["status"] == "ok" and env_facts["peaks_gflops"]["cpu-fp32"]["gflops"] > 0
    assert env_facts["versions"]["torch"] and "tensorrt" in env_facts["versions"]

    tests = steps["02-gpu-tests"]
    assert tests["status"] == "ok" and tests["facts"]["tests"] > 10 and tests["facts"]["skipped"] > 0, tests
    assert tests["facts"]["failed_tests"] == []

    training = steps["03-training"]
    assert training["status"] == "ok" and training["facts"]["device"] == "cpu", training
    (epoch,) = training["facts"]["epochs"]
    assert epoch["images_per_s"] > 0 and 0 < epoch["data_share"] < 1, epoch
    assert 5_000 < training["facts"]["train_images_per_epoch"] < 7_000  # View 1's training people, less validation

    bench = steps["04-bench"]
    assert bench["status"] == "ok", bench
    rows = {r["runtime"]: r for r in bench["facts"]["runtimes"]}
    cuda = [r for name, r in rows.items() if name.endswith("cuda") or "tensorrt" in name]
    assert len(cuda) >= 10 and all(r["status"] == "unavailable" and r["why"] for r in cuda), cuda
    assert rows["eager-fp32-cpu"]["status"] == "ok" and rows["eager-fp32-cpu"]["best_pairs_per_s"] > 0
    assert "UNTRAINED" not in bench["facts"]["weights"] and "trained-here" in bench["facts"]["export"]

    profile = steps["05-profile"]
    assert profile["status"] == "ok" and profile["facts"]["batch"] == 2 and profile["facts"]["top"], profile
    assert 0.99 < sum(k["share"] for k in profile["facts"]["top"]) <= 1.0 or len(profile["facts"]["top"]) == 15

    summary = (out / "summary.md").read_text()
    assert "dry run, no GPU" in summary and "| eager-fp32-cpu | ok |" in summary and "trained by step 3" in summary
    assert "Training on cpu (16 px pack)" in summary
