"""siamese-bench refuses bad options at parse time, and bad files with one line, writing nothing."""

import pytest
from refusals import ERROR, USAGE, assert_refused

from bench.cli import main as bench_cli


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch", "0"], "give at least one positive integer"),
        (["--batch", ","], "give at least one positive integer"),
        (["--batch", "8,x"], "is not a comma-separated list of integers"),
        (["--runtimes", "tflite"], "unknown runtime"),
        (["--runtimes", ","], "unknown runtime"),
        (["--duration", "nan"], "'nan' is not a finite number"),
        (["--duration", "inf"], "Invalid value for '--duration'"),
        (["--warmup-seconds", "-1"], "Invalid value for '--warmup-seconds'"),
        (["--regression-threshold", "nan"], "not a finite number"),
        (["--repeats", "0"], "Invalid value for '--repeats'"),
        (["--tolerance", "atol=-1"], "expected KEY=VALUE"),
        (["--tolerance", "speed=1"], "expected KEY=VALUE"),
        (["--tolerance", "rtol=nan"], "expected KEY=VALUE"),
        (["--json", "out.txt"], "'out.txt': write it as .json"),
        (["--save-inputs", "ref.json"], "'ref.json': write it as .npz"),
        (["--compare", "missing.json"], "does not exist"),
        (["--threads", "2147483648"], "Invalid value for '--threads'"),
        (["--batch", "1,70000"], "70000 is above the largest value, 65536"),
        (["--concurrency", "5000"], "5000 is above the largest value, 1024"),
        (["--repeats", str(10**9)], "Invalid value for '--repeats'"),
        (["--parity-pairs", str(10**9)], "Invalid value for '--parity-pairs'"),
        (["--duration", "1e9"], "Invalid value for '--duration'"),
    ],
)
def test_bad_options_fail_at_parse_time(tmp_path, args, message):
    assert_refused(bench_cli, [*args, "--export", tmp_path], message, USAGE, [tmp_path])


def test_not_an_export(tmp_path):
    assert_refused(bench_cli, ["--export", tmp_path, "--no-timing"], "not an export folder", ERROR, [tmp_path])


def test_an_unreadable_baseline_is_refused_before_benchmarking(tmp_path):
    baseline = tmp_path / "old.json"
    baseline.write_text("{not json")
    args = ["--export", tmp_path, "--compare", baseline, "--json", tmp_path / "new.json"]
    assert_refused(bench_cli, args, "old.json: unreadable baseline", ERROR, [tmp_path])


def test_a_reference_file_that_is_not_one(small_export, tmp_path):
    _, dest, _ = small_export("contrastive")
    junk = tmp_path / "ref.npz"
    junk.write_bytes(b"junk")
    args = ["--export", dest, "--load-reference", junk, "--no-timing", "--runtimes", "ort-cpu"]
    assert_refused(bench_cli, args, "ref.npz: not a saved parity reference", ERROR, [tmp_path])


def test_an_empty_pair_list_is_refused(small_export, tmp_path):
    _, dest, _ = small_export("contrastive")
    empty = tmp_path / "pairs.txt"
    empty.write_text("0\n")
    args = ["--export", dest, "--pairs", empty, "--no-timing", "--runtimes", "ort-cpu"]
    assert_refused(bench_cli, args, "pairs.txt: the list holds no pairs", ERROR, [tmp_path])


def test_a_report_folder_that_is_a_file(small_export, tmp_path):
    _, dest, _ = small_export("contrastive")
    (tmp_path / "report").write_text("x")
    args = ["--export", dest, "--report", tmp_path / "report", "--no-timing", "--runtimes", "ort-cpu"]
    assert_refused(bench_cli, args, "is a file", USAGE, [tmp_path])


def test_a_lone_npy_array_is_not_a_reference(small_export, tmp_path):
    import numpy as np

    _, dest, _ = small_export("contrastive")
    np.save(tmp_path / "ref.npy", np.zeros(3))
    args = ["--export", dest, "--load-reference", tmp_path / "ref.npy", "--no-timing", "--runtimes", "ort-cpu"]
    assert_refused(bench_cli, args, "ref.npy: not a saved parity reference .*not the .npz archive", ERROR, [tmp_path])


@pytest.mark.parametrize(
    "baseline", ["[1, 2]", '{"schema": "siamese-bench/1", "runtimes": [1]}', '{"schema": "siamese-bench/1"}']
)
def test_a_baseline_of_another_shape_is_one_line(small_export, tmp_path, baseline):
    from bench.result import SCHEMA

    _, dest, _ = small_export("contrastive")
    (tmp_path / "old.json").write_text(baseline.replace("siamese-bench/1", SCHEMA))
    args = ["--export", dest, "--compare", tmp_path / "old.json", "--no-timing", "--runtimes", "ort-cpu"]
    assert_refused(bench_cli, args, "old.json: (schema .* is not|malformed benchmark result)", ERROR, [tmp_path])


@pytest.mark.parametrize("option, name", [("--json", "out.json"), ("--save-inputs", "ref.npz"), ("--report", "report")])
def test_an_unwritable_output_is_refused_before_benchmarking(small_export, tmp_path, option, name):
    _, dest, _ = small_export("contrastive")
    (tmp_path / "file").write_text("a file, where a folder should be")
    target = tmp_path / "file" / "sub" / name
    args = ["--export", dest, option, target, "--runtimes", "ort-cpu", "--duration", "60"]
    output = assert_refused(bench_cli, args, r"cannot write into .*file/sub.*: Not a directory", ERROR, [tmp_path])
    assert "ort-cpu" not in output  # nothing was benchmarked


def test_an_endless_pair_list_is_refused_unread(small_export, tmp_path):
    _, dest, _ = small_export("contrastive")
    args = ["--export", dest, "--pairs", "/dev/zero", "--no-timing", "--runtimes", "ort-cpu"]
    assert_refused(bench_cli, args, "/dev/zero: larger than the 256 MiB a pair file may hold", ERROR, [tmp_path])
