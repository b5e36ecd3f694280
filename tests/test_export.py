"""Export round trips for every format x variant, metadata, manifest, tampering and failures."""

import json
import shutil
from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from conftest import make_test_checkpoint, writable_formats

from siamese.artifacts.checkpoint import load_checkpoint, save_checkpoint
from siamese.artifacts.folder import WEIGHTS, ExportFolder, ExportPolicy
from siamese.artifacts.formats import FORMATS, GRAPHS, artifact_name
from siamese.artifacts.graphs import graphs_from_checkpoint
from siamese.backends.onnx.writer import write_onnx
from siamese.backends.torch.writers import write_pt2, write_torchscript
from siamese.cli import export as export_cli
from siamese.cli import verify as verify_cli
from siamese.core.errors import SiameseError
from siamese.tasks.export import export_checkpoint, resolve_formats

SIZE = 16
FORMATS_HERE = writable_formats()


def loaded(dest, runtime="ort-cpu", graphs=GRAPHS):
    from siamese.backends import create

    runner = create(runtime)
    runner.load(ExportFolder.open(dest, ExportPolicy(trust_code=True)), graphs)  # the test's own export
    return runner


@pytest.fixture(scope="module", params=["bce", "contrastive"])
def exported(request, small_export):
    return small_export(request.param)


def random_images(n, size=SIZE, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_matches_eager(exported, fmt):
    if fmt not in FORMATS_HERE:
        pytest.skip(f"{fmt} cannot be written on this machine (no C++ compiler, or no openvino)")
    ckpt, dest, checks = exported
    assert all(c.passed for c in checks)
    graphs = graphs_from_checkpoint(load_checkpoint(ckpt))
    folder = ExportFolder.open(dest)
    a, b = random_images(5), random_images(5, seed=2)  # a batch size never seen at export
    with torch.inference_mode():
        ref_score, ref_same = graphs["pair"](torch.from_numpy(a), torch.from_numpy(b))
        ref_features = graphs["embedding"](torch.from_numpy(a))
    runner = loaded(folder.path, FORMATS[fmt].verified_by)
    out = runner.pair(a, b)
    np.testing.assert_allclose(out["score"], ref_score.numpy(), rtol=1e-4, atol=1e-5)
    assert out["same"].dtype == np.bool_ and (out["same"] == ref_same.numpy()).all()
    features = runner.embed(a)
    np.testing.assert_allclose(features, ref_features.numpy(), rtol=1e-4, atol=1e-4)
    compared = runner.compare(features[:3], features[2:])
    assert compared["score"].shape == (3,)


def test_metadata_travels_inside_every_artifact(exported):
    ckpt, dest, _ = exported
    meta = json.loads((dest / "metadata.json").read_text())
    variant = load_checkpoint(ckpt).variant
    for key in (
        "variant",
        "threshold",
        "margin",
        "image_size",
        "normalization",
        "input_layout",
        "training",
        "checkpoint_sha256",
        "git_commit",
        "export_time",
        "versions",
    ):
        assert key in meta, key
    assert meta["variant"] == variant and meta["image_size"] == SIZE
    props = {p.key: p.value for p in onnx.load(str(dest / "pair.onnx")).metadata_props}
    assert props["variant"] == variant and float(props["threshold"]) == meta["threshold"]
    assert int(onnx.load(str(dest / "pair.onnx")).opset_import[0].version) >= 18
    files = {"metadata.json": ""}
    torch.jit.load(str(dest / "pair.torchscript.pt"), _extra_files=files)
    assert json.loads(files["metadata.json"])["threshold"] == meta["threshold"]
    from torch.export import load

    extra = {"metadata.json": ""}
    load(str(dest / "pair.pt2"), extra_files=extra)
    assert json.loads(extra["metadata.json"])["variant"] == variant


def test_onnx_has_named_inputs_and_a_dynamic_batch(exported):
    _, dest, _ = exported
    model = onnx.load(str(dest / "pair.onnx"))
    assert [i.name for i in model.graph.input] == ["image_a", "image_b"]
    assert [o.name for o in model.graph.output] == ["score", "same"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value") and [d.dim_value for d in dims[1:]] == [SIZE, SIZE, 3]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8


def test_manifest_lists_every_file(exported):
    _, dest, _ = exported
    manifest = json.loads((dest / "manifest.json").read_text())
    on_disk = {p.name for p in dest.iterdir()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    expected = {artifact_name(g, f) for g in GRAPHS for f in FORMATS_HERE} | {WEIGHTS}
    assert expected <= on_disk
    for name, entry in manifest["files"].items():
        assert entry["size"] == (dest / name).stat().st_size and len(entry["sha256"]) == 64


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_tampered_truncated_or_missing_files_are_refused(exported, tmp_path, damage):
    _, dest, _ = exported
    copy = shutil.copytree(dest, tmp_path / "copy")
    target = copy / "pair.onnx"
    data = bytearray(target.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
        match = "sha256 differs"
    elif damage == "truncate":
        target.write_bytes(bytes(data[:-100]))
        match = "truncated"
    else:
        target.unlink()
        match = "missing"
    with pytest.raises(SiameseError, match=match):
        loaded(copy, graphs=["pair"])


def test_onnx_graphs_keep_their_weights_in_weights_safetensors(tmp_path):
    """An fp32 export stores each tensor once: every ONNX initializer points into the
    safetensors file that the parity reference reads, and no onnx.data is written."""
    ckpt = make_test_checkpoint(tmp_path / "c.pt", "bce", SIZE)
    dest, _ = export_checkpoint(
        ckpt, tmp_path / "exports", formats=["onnx"], n_pairs=4, log=lambda m: None, untrained=True
    )
    weights = (dest / "weights.safetensors").stat().st_size
    assert not (dest / "onnx.data").exists()
    total = sum(f.stat().st_size for f in dest.iterdir())
    assert weights < total < 1.02 * weights  # the graphs themselves are a few kB
    notes = json.loads((dest / "metadata.json").read_text())["artifacts"]
    assert notes["embedding.onnx"]["tensors_in_weights"] > 0
    assert all(notes[f"{g}.onnx"]["tensors_added"] == 0 for g in ("embedding", "pair", "compare"))
    for graph in ("embedding", "pair"):
        initializers = onnx.load(str(dest / f"{graph}.onnx"), load_external_data=False).graph.initializer
        locations = {e.value for t in initializers for e in t.external_data if e.key == "location"}
        assert locations == {"weights.safetensors"}
    (dest / "weights.safetensors").unlink()
    with pytest.raises(SiameseError, match="weights.safetensors: listed in manifest.json but missing"):
        loaded(dest, graphs=["embedding"])


def test_int8_export_is_quantized_calibrated_on_training_identities_and_verified(tmp_path):
    ckpt = make_test_checkpoint(tmp_path / "c.pt", "contrastive", SIZE)
    fp32, _ = export_checkpoint(
        ckpt, tmp_path / "exports", formats=["onnx"], n_pairs=4, log=lambda m: None, untrained=True
    )
    formats = resolve_formats(["all"], "int8", log=lambda m: None)  # onnx, and openvino where NNCF is
    int8, checks = export_checkpoint(
        ckpt, tmp_path / "exports", formats=formats, dtype="int8", n_pairs=16, log=lambda m: None, untrained=True
    )
    assert int8.name.endswith("-int8") and all(c.passed for c in checks)
    assert {c.artifact.split()[0] for c in checks} == set(formats)  # each format verified by its runner
    ratio = (fp32 / "weights.safetensors").stat().st_size / (int8 / "onnx.data").stat().st_size
    assert 3.5 < ratio < 4.5  # int8 weights, one copy shared by both graphs
    ops = {n.op_type for n in onnx.load(str(int8 / "embedding.onnx"), load_external_data=False).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm"} <= ops
    meta = ExportFolder.open(int8).metadata
    assert meta.dtype == "int8"
    calibration = json.loads((int8 / "metadata.json").read_text())["int8_calibration"]
    assert "LFW train pairs from pairsDevTrain.txt" in calibration
    assert loaded(int8).embed(np.zeros((2, SIZE, SIZE, 3), np.uint8)).shape == (2, 1024)
    if "openvino" in formats:  # NNCF's INT8 IR: quantize/dequantize nodes around the convolutions
        import openvino as ov

        model = ov.Core().read_model(str(int8 / "embedding.ov.xml"), str(int8 / "openvino.bin"))
        assert {"FakeQuantize", "Convolution"} <= {op.get_type_name() for op in model.get_ops()}
        # one weights file for the three IRs: the pair graph references the embedding graph's constants
        assert not list(int8.glob("*.ov.bin"))
        notes = json.loads((int8 / "metadata.json").read_text())["artifacts"]
        assert notes["pair.ov.xml"]["constants_shared"] >= notes["embedding.ov.xml"]["constants_added"] > 0
        assert (
            "nncf" in json.loads((int8 / "metadata.json").read_text())["artifacts"]["embedding.ov.xml"]["quantization"]
        )
    # the INT8 study (bench/studies) reads exactly these two exports: its smoke test at a tiny size
    from bench.studies import int8_settings

    args = ["--checkpoint", ckpt, "--fp32-export", fp32, "--int8-export", int8, "--pairs", "4"]
    study = CliRunner().invoke(int8_settings.main, [str(a) for a in args])
    assert study.exit_code == 0 and "ORT QDQ, siamese-export settings" in study.output, study.output


def test_onnx_quantization_settings_reach_the_quantizer(tmp_path):
    from onnx import numpy_helper

    from siamese.backends.onnx.quantize import calibration_feeds, quantize_onnx

    ckpt = make_test_checkpoint(tmp_path / "c.pt", "contrastive", SIZE)
    fp32, _ = export_checkpoint(
        ckpt, tmp_path / "exports", formats=["onnx"], n_pairs=4, log=lambda m: None, untrained=True
    )
    images = np.random.default_rng(0).integers(0, 256, (64, SIZE, SIZE, 3), np.uint8)

    def quantized(name, **settings):
        out = tmp_path / f"{name}.onnx"
        notes = quantize_onnx(fp32 / "embedding.onnx", out, calibration_feeds(["images"], images), **settings)
        initializers = onnx.load(str(out)).graph.initializer
        arrays = [numpy_helper.to_array(t) for t in initializers]
        weights = max(int(np.abs(a.astype(np.int32)).max()) for a in arrays if a.dtype == np.int8 and a.size > 1)
        scales = {t.name: float(a) for t, a in zip(initializers, arrays, strict=True) if a.ndim == 0}
        return notes, weights, scales

    notes, weights, moving = quantized("default")
    assert "7 bits" in notes["quantization"] and weights <= 64  # reduce_range: 7-bit weights
    notes, weights, _ = quantized("8bit", reduce_range=False)
    assert "8 bits" in notes["quantization"] and weights == 127
    _, _, minmax = quantized("minmax", calibration="minmax")
    shared = [name for name in moving if name in minmax and name.endswith("_scale")]
    assert shared and all(minmax[n] >= moving[n] * (1 - 1e-6) for n in shared)  # extremes >= mean ranges
    assert any(minmax[n] > moving[n] * 1.01 for n in shared)
    with pytest.raises(SiameseError, match="unknown calibration 'median'"):
        quantized("bad", calibration="median")


def test_int8_is_an_onnx_or_openvino_artifact_only(tmp_path):
    ckpt = make_test_checkpoint(tmp_path / "c.pt", "contrastive", SIZE)
    with pytest.raises(SiameseError, match="INT8 is an ONNX Runtime or OpenVINO"):
        export_checkpoint(
            ckpt, tmp_path / "exports", formats=["torchscript"], dtype="int8", log=lambda m: None, untrained=True
        )


def test_a_disagreeing_artifact_fails_the_export_and_leaves_nothing(tmp_path):
    ckpt = make_test_checkpoint(tmp_path / "c.pt", "bce", SIZE)
    graphs = graphs_from_checkpoint(load_checkpoint(ckpt))
    with torch.no_grad():
        graphs["embedding"].embedding[0].weight.mul_(1.01)  # the exported model is perturbed by 1%
    with pytest.raises(SiameseError, match=r"failed verification.*onnx embedding\+pair: features: max abs"):
        export_checkpoint(
            ckpt, tmp_path / "exports", formats=["onnx"], graphs=graphs, n_pairs=4, log=lambda m: None, untrained=True
        )
    assert list((tmp_path / "exports").iterdir()) == []


def test_existing_export_needs_force(exported):
    ckpt, dest, _ = exported
    before = (dest / "manifest.json").read_text()
    with pytest.raises(SiameseError, match="exists; pass --force"):
        export_checkpoint(ckpt, dest.parent, dest.name, formats=["onnx"], untrained=True)
    assert (dest / "manifest.json").read_text() == before


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: random_images(2, size=SIZE + 8), r"expected shape \(N, 16, 16, 3\)"),
        (lambda: random_images(2).astype(np.float32), "expected uint8 images, got float32"),
        (
            lambda: random_images(2)[..., :1].copy(),
            r"expected shape \(N, 16, 16, 3\) RGB, got \(2, 16, 16, 1\)",
        ),
    ],
)
def test_wrong_inputs_are_refused_before_the_runtime(exported, make, match):
    _, dest, _ = exported
    runner = loaded(dest, graphs=["embedding"])
    with pytest.raises(SiameseError, match=match):
        runner.embed(make())


def test_checkpoint_of_another_variant_or_newer_format(tmp_path):
    ckpt_path = make_test_checkpoint(tmp_path / "c.pt", "bce", SIZE)
    ckpt = load_checkpoint(ckpt_path)
    ckpt.model_config = replace(ckpt.model_config, variant="contrastive")
    with pytest.raises(SiameseError, match="do not fit"):
        ckpt.build_model()
    ckpt.format_version = 99
    save_checkpoint(tmp_path / "new.pt", ckpt)
    with pytest.raises(SiameseError, match="newer than this version reads"):
        load_checkpoint(tmp_path / "new.pt")


def test_cli_export_and_verify_end_to_end(tmp_path, lfw_dir):
    ckpt = make_test_checkpoint(tmp_path / "runs" / "lfw" / "contrastive" / "checkpoint.pt", "contrastive", SIZE)
    (ckpt.parent / "summary.json").write_text("{}")
    runner = CliRunner()
    result = runner.invoke(
        export_cli.main,
        [
            "--runs",
            str(tmp_path / "runs"),
            "--format",
            "onnx",
            "--out",
            str(tmp_path / "exports"),
            "--verify-pairs",
            "4",
            "--untrained",
        ],
    )
    assert result.exit_code == 0, result.output
    dest = tmp_path / "exports" / "lfw-contrastive-fp32"
    assert "exported" in result.output and (dest / "pair.onnx").is_file()
    again = runner.invoke(
        export_cli.main,
        ["--checkpoint", str(ckpt), "--untrained", "--format", "onnx", "--out", str(tmp_path / "exports")],
    )
    assert again.exit_code == 1 and "--force" in again.output

    from siamese.data.lfw import locate_lfw

    root = locate_lfw(lfw_dir).image_root
    a, b = (
        root / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg",
        root / "Aaron_Peirsol" / "Aaron_Peirsol_0002.jpg",
    )
    one = runner.invoke(verify_cli.main, [str(a), str(b), "--export", str(dest)])
    assert one.exit_code == 0 and "person: distance" in one.output, one.output
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(
        f"{a.relative_to(root)} {b.relative_to(root)} 1\n{a.relative_to(root)} Abdullah_Gul/Abdullah_Gul_0001.jpg 0\n"
    )
    out = tmp_path / "results.json"
    many = runner.invoke(
        verify_cli.main,
        ["--pairs", str(pairs), "--images", str(root), "--export", str(dest), "--output", str(out)],
    )
    assert many.exit_code == 0 and "2 pairs" in many.output and "accuracy" in many.output, many.output
    written = json.loads(out.read_text())
    rows = written["pairs"]
    assert [r["label"] for r in rows] == [1, 0] and {"score", "same"} <= set(rows[0])
    assert written["model"] == {
        "source": str(dest), "model": "contrastive", "dtype": "fp32", "trained_on": "untrained", "test_accuracy": None,
        "framing": "detected",
    }  # fmt: skip
    assert [(r["faces_a"], r["faces_b"], r["undecided"]) for r in rows] == [(1, 1, None)] * 2  # LFW: one face each
    assert "UNTRAINED random weights" in many.output and "UNTRAINED random weights" in one.output
    bad = runner.invoke(verify_cli.main, [str(a), str(tmp_path / "pairs.txt"), "--export", str(dest)])
    assert bad.exit_code == 1 and "cannot decode image" in bad.output and "Traceback" not in bad.output


FULL_WRITERS = {"onnx": write_onnx, "torchscript": write_torchscript, "pt2": write_pt2}


@pytest.mark.slow
@pytest.mark.parametrize("fmt", list(FULL_WRITERS))
def test_full_size_network_exports_at_full_size_with_parity(tmp_path, fmt):
    ckpt = load_checkpoint(make_test_checkpoint(tmp_path / "c.pt", "contrastive", 128))
    graph = graphs_from_checkpoint(ckpt)["embedding"]
    path = tmp_path / f"embedding.{fmt}"
    FULL_WRITERS[fmt](graph, "embedding", path, {"image_size": 128})
    stored = sum(f.stat().st_size for f in tmp_path.iterdir() if f.name.startswith(("embedding", "onnx.data")))
    assert 540e6 < stored < 560e6  # the 134 M-parameter FC layer dominates
    images = random_images(2, size=128)
    with torch.inference_mode():
        ref = graph(torch.from_numpy(images)).numpy()
    if fmt == "onnx":
        from siamese.backends.onnx.runtime import make_session

        out = make_session(path, ["CPUExecutionProvider"]).run(None, {"images": images})[0]
    else:
        load = torch.jit.load if fmt == "torchscript" else lambda p: torch.export.load(p).module()
        with torch.inference_mode():
            out = load(str(path))(torch.from_numpy(images)).numpy()
    assert np.abs(out - ref).max() / np.abs(ref).max() < 1e-4


def test_force_replaces_an_export_whole(tmp_path):
    ckpt = make_test_checkpoint(tmp_path / "c.pt", "contrastive", SIZE)
    first, _ = export_checkpoint(
        ckpt, tmp_path / "exports", formats=["onnx"], n_pairs=2, log=lambda m: None, untrained=True
    )
    second, _ = export_checkpoint(
        ckpt, tmp_path / "exports", formats=["torchscript"], n_pairs=2, force=True, log=lambda m: None, untrained=True
    )
    assert first == second and ExportFolder.open(second).formats() == ["torchscript"]
    assert [p.name for p in (tmp_path / "exports").iterdir()] == [second.name]


def test_weights_file_holds_tensors_only_and_rebuilds_the_checkpoint_model(exported):
    from safetensors import safe_open

    from siamese.artifacts.graphs import graphs_from_weights

    ckpt, dest, _ = exported
    with safe_open(str(dest / WEIGHTS), "pt") as f:
        assert f.metadata()["format"] == "siamese-weights"
    rebuilt = graphs_from_weights(ExportFolder.open(dest))
    original = graphs_from_checkpoint(load_checkpoint(ckpt))
    a, b = random_images(3), random_images(3, seed=5)
    with torch.inference_mode():
        for graph in ("pair",):
            got = rebuilt[graph](torch.from_numpy(a), torch.from_numpy(b))
            want = original[graph](torch.from_numpy(a), torch.from_numpy(b))
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_modified_weights_file_is_refused(exported, tmp_path):
    from siamese.artifacts.graphs import graphs_from_weights

    _, dest, _ = exported
    copy = shutil.copytree(dest, tmp_path / "copy")
    data = bytearray((copy / WEIGHTS).read_bytes())
    data[-10] ^= 0xFF
    (copy / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(SiameseError, match="weights.safetensors: sha256 differs"):
        graphs_from_weights(ExportFolder.open(copy))


def test_verify_pairs_in_small_batches_gives_each_pair_its_own_images(contrastive_export, image_folder):
    """Decoding ahead of the runtime must not shift any image onto another pair's features."""
    from siamese.core.pairs import Pair
    from siamese.tasks.verify import Verifier

    verifier = Verifier(contrastive_export, "ort-cpu", policy=ExportPolicy(), detect=False)  # noise images
    keys = ["A/1.png", "A/2.png", "B/1.png", "B/2.png"]
    pairs = [Pair(a, b, -1) for a in keys for b in keys if a < b]
    rows = verifier.verify_pairs(pairs, image_folder, batch=1)  # one image per batch: four batches in flight
    for pair, row in zip(pairs, rows, strict=True):
        alone = verifier.verify_files(image_folder / pair.a, image_folder / pair.b)
        assert row.score == pytest.approx(alone.score, rel=1e-5, abs=1e-6), pair


def test_quiet_logger_keeps_only_errors_and_restores_the_level(caplog):
    import logging

    from siamese.core.errors import quiet_logger

    logger = logging.getLogger("siamese-test-chatter")
    logger.setLevel(logging.INFO)
    with pytest.raises(RuntimeError), quiet_logger("siamese-test-chatter"):
        logger.info("progress bar")
        logger.error("real problem")
        raise RuntimeError("the quantizer failed")
    assert [r.getMessage() for r in caplog.records] == ["real problem"]
    assert logger.level == logging.INFO  # restored, even though the block raised


def test_the_default_export_is_explicit_and_never_untrained(tmp_path, small_export):
    """Readers take exports/DEFAULT (set by siamese-export for its most accurate fp32 export of
    trained weights), else the only trained export; several, or only untrained ones: an error."""
    from siamese.artifacts.folder import default_export, set_default_export

    _, untrained, _ = small_export("contrastive")
    root = tmp_path / "exports"
    shutil.copytree(untrained, root / untrained.name)
    with pytest.raises(SiameseError, match="no export of trained weights .* pass --export DIR"):
        default_export(root)
    set_default_export(root, untrained.name)  # asked for by name: used
    assert default_export(root) == root / untrained.name
    (root / "DEFAULT").write_text("gone\n")
    with pytest.raises(SiameseError, match="names 'gone', which is no export"):
        default_export(root)


def test_an_untrained_checkpoint_is_exported_only_when_asked_and_says_so(tmp_path):
    ckpt = make_test_checkpoint(tmp_path / "c.pt", "contrastive", SIZE)
    args = ["--checkpoint", str(ckpt), "--out", str(tmp_path / "exports"), "--format", "onnx", "--verify-pairs", "4"]
    refused = CliRunner().invoke(export_cli.main, args)
    assert refused.exit_code == 1 and "never finished training" in refused.output and "--untrained" in refused.output
    done = CliRunner().invoke(export_cli.main, [*args, "--untrained"])
    assert done.exit_code == 0, done.output
    assert "default export" not in done.output and not (tmp_path / "exports" / "DEFAULT").exists()
