"""The format registry is the only table a format needs: a format added to it in a few lines is
exported, verified by its own runtime and benchmarked, with nothing else edited."""

import pytest
from conftest import make_test_checkpoint

from bench.harness import BenchConfig, run_benchmark
from bench.timing import TimingConfig
from siamese.artifacts.folder import ExportFolder
from siamese.artifacts.formats import DTYPES, FORMATS, Format, check_dtype, formats_for_all
from siamese.backends import RUNTIMES, RunnerSpec
from siamese.core.errors import SiameseError
from siamese.tasks.export import export_checkpoint


@pytest.fixture
def fake_format(monkeypatch):
    monkeypatch.setitem(
        FORMATS,
        "fake",
        Format("fake", ".fake.pt", "fake_runners:write_fake", "fake-cpu", unsupported={"int8": "not quantized"}),
    )
    monkeypatch.setitem(RUNTIMES, "fake-cpu", RunnerSpec("fake_runners", "FakeFormat"))
    return "fake"


def test_a_new_format_is_exported_verified_and_benchmarked(fake_format, tmp_path):
    ckpt = make_test_checkpoint(tmp_path / "checkpoint.pt", "contrastive", 16)
    dest, checks = export_checkpoint(
        ckpt, tmp_path / "exports", formats=[fake_format], n_pairs=4, log=lambda m: None, untrained=True
    )
    assert [c.artifact for c in checks] == ["fake embedding+pair", "fake compare"] and all(c.passed for c in checks)
    export = ExportFolder.open(dest)
    assert export.formats() == ["fake"] and export.has("pair.fake.pt")
    cfg = BenchConfig(
        export=dest,
        runtimes=["fake-cpu"],
        batches=[2],
        timing=TimingConfig(warmup=1, warmup_seconds=0.0, iterations=2, repeats=2),
        random_pairs=4,
        parity_pairs=0,
    )
    (entry,) = run_benchmark(cfg, log=lambda m: None).runtimes
    assert entry.status == "ok" and entry.parity.passed and [t.batch for t in entry.timing] == [2]


def test_the_dtype_rules_are_the_registry_s(fake_format):
    with pytest.raises(SiameseError, match="fake cannot be written in int8: not quantized"):
        check_dtype(["onnx", "fake"], "int8")
    with pytest.raises(SiameseError, match="onnx cannot be written in bf16: ONNX opset 18 has no bfloat16"):
        check_dtype(["onnx"], "bf16")
    for dtype in DTYPES:
        chosen, _ = formats_for_all(dtype)
        assert chosen and all(FORMATS[f].supports(dtype) for f in chosen)
    assert "fake" in formats_for_all("fp32")[0] and "fake" not in formats_for_all("int8")[0]


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_names_a_registered_runtime_that_reads_it(name):
    fmt = FORMATS[name]
    assert fmt.verified_by in RUNTIMES
    assert RUNTIMES[fmt.verified_by].create(fmt.verified_by).abilities.artifact == name
