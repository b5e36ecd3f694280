"""siamese-verify refuses bad input with one line and the right exit code."""

import json
import shutil

import pytest
from refusals import ERROR, GOOD_PAIRS, METADATA_EDITS, USAGE, assert_refused, edited_export, pair_list

from siamese.cli import verify as verify_cli


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give either two images IMG_A IMG_B or --pairs FILE"),
        (["a.png"], "give either two images"),
        (["a.png", "b.png", "c.png"], "give either two images"),
        (["--runtime", "tflite", "a.png", "b.png"], "Invalid value for '--runtime'"),
        (["--batch", "0", "a.png", "b.png"], "Invalid value for '--batch'"),
        (["--output", "out.txt", "--pairs", "p.txt"], "'out.txt': write it as .csv or .json"),
        (["--output", "out.csv", "a.png", "b.png"], "--output writes the results of a --pairs list"),
        (["--batch", str(10**6), "a.png", "b.png"], "Invalid value for '--batch'"),
    ],
)
def test_bad_usage(tmp_path, args, message):
    assert_refused(verify_cli.main, args, message, USAGE, [tmp_path])


def test_not_an_export(tmp_path):
    assert_refused(verify_cli.main, ["--export", tmp_path, "a.png", "b.png"], "not an export folder", ERROR, [tmp_path])


@pytest.mark.parametrize("edit, message", METADATA_EDITS)
def test_edited_metadata_is_refused_with_the_file_and_key(contrastive_export, tmp_path, edit, message):
    copy = edited_export(contrastive_export, tmp_path, edit)
    output = assert_refused(verify_cli.main, ["--export", copy, "a.png", "b.png"], message, ERROR, [tmp_path])
    assert "metadata.json" in output


def test_a_modified_artifact_fails_its_hash(contrastive_export, tmp_path, image_folder):
    copy = tmp_path / "export"
    shutil.copytree(contrastive_export, copy)
    with open(copy / "embedding.onnx", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01")
    pairs = pair_list(tmp_path, GOOD_PAIRS)
    args = ["--export", copy, "--pairs", pairs, "--images", image_folder]
    assert_refused(verify_cli.main, args, "embedding.onnx: sha256 differs from the manifest", ERROR, [tmp_path])


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "pair file is empty"),
        ("0\n", "the list holds no pairs"),
        ("A/1.png A/2.png 1\nA/1.png B/1.png\n", "pairs.txt:2: a line without a label"),
        ("A/1.png ../B/1.png 1\n", "pairs.txt:1: image path '../B/1.png'"),
        ("A/1.png A/9.png 1\n", "image not found: .*A/9.png"),
        ("A/1.png A/1.png 1\n", "pairs image 'A/1.png' with itself"),
    ],
)
def test_bad_pair_lists(contrastive_export, tmp_path, image_folder, text, message):
    pairs = pair_list(tmp_path, text)
    args = [
        "--export",
        contrastive_export,
        "--pairs",
        pairs,
        "--images",
        image_folder,
        "--output",
        tmp_path / "out.csv",
    ]
    assert_refused(verify_cli.main, args, message, ERROR, [tmp_path])
    assert not (tmp_path / "out.csv").exists()


def test_a_linked_image_outside_the_root_is_refused(contrastive_export, tmp_path, image_folder):
    (tmp_path / "secret.png").write_bytes((image_folder / "A" / "1.png").read_bytes())
    (image_folder / "B" / "3.png").symlink_to(tmp_path / "secret.png")
    pairs = pair_list(tmp_path, "A/1.png B/3.png 0\n")
    args = ["--export", contrastive_export, "--pairs", pairs, "--images", image_folder]
    assert_refused(verify_cli.main, args, "outside the image root", ERROR, [tmp_path])


def test_an_image_root_that_is_not_a_folder(contrastive_export, tmp_path):
    pairs = pair_list(tmp_path, GOOD_PAIRS)
    args = ["--export", contrastive_export, "--pairs", pairs, "--images", tmp_path / "none"]
    assert_refused(verify_cli.main, args, "image root .*none is not a folder", ERROR, [tmp_path])


def test_duplicate_pairs_are_answered_and_reported(contrastive_export, tmp_path, image_folder):
    from click.testing import CliRunner

    pairs = pair_list(tmp_path, GOOD_PAIRS + "A/2.png A/1.png 1\n")
    result = CliRunner().invoke(
        verify_cli.main, ["--export", str(contrastive_export), "--pairs", str(pairs), "--images", str(image_folder)]
    )
    assert result.exit_code == 0 and "warning: " in result.output and "1 repeated pairs" in result.output
    assert "3 pairs" in result.output


@pytest.mark.parametrize("runtime", ["eager-fp32-cpu", "ort-cpu"])
def test_weights_of_another_shape_are_refused_in_one_line(contrastive_export, tmp_path, image_folder, runtime):
    from safetensors.torch import load_file, save_file

    from siamese.tasks.export import write_manifest

    copy = tmp_path / "export"
    shutil.copytree(contrastive_export, copy)
    weights = copy / "weights.safetensors"
    with open(weights, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    state = load_file(weights)
    name = next(k for k, v in state.items() if v.dim() == 2)
    state[name] = state[name][:, :-1].contiguous()  # one column fewer, same names and record
    save_file(state, weights, metadata=header["__metadata__"])
    write_manifest(copy)
    pairs = pair_list(tmp_path, GOOD_PAIRS)
    args = ["--export", copy, "--runtime", runtime, "--pairs", pairs, "--images", image_folder]
    message = "weights.safetensors: weights do not fit the network|embedding.onnx: ONNX Runtime cannot load it"
    output = assert_refused(verify_cli.main, args, message, ERROR, [tmp_path])
    assert str(copy) in output  # the export's file is named, not its private copy


def test_endless_inputs_are_refused_unread(contrastive_export, tmp_path):
    """/dev/zero as a pair list or a key: one line at once, not memory growing until MemoryError."""
    args = ["--export", contrastive_export, "--pairs", "/dev/zero"]
    assert_refused(verify_cli.main, args, "/dev/zero: larger than the 256 MiB a pair file may hold", ERROR, [tmp_path])
    args = ["--export", contrastive_export, "--verify-key", "/dev/zero", "a.png", "b.png"]
    assert_refused(verify_cli.main, args, "/dev/zero: larger than the 1 MiB a signing key may hold", ERROR, [tmp_path])


def test_a_long_pair_list_is_compared_in_chunks_from_the_image_embeddings(contrastive_export):
    """Memory follows the images, not the pairs: 200,000 pairs over 100 images never gather
    200,000 x 2 feature rows (1.6 GB) at once."""
    import tracemalloc

    import numpy as np

    from siamese.tasks.verify import Verifier

    verifier = Verifier(contrastive_export)
    rng = np.random.default_rng(0)
    features = rng.standard_normal((100, 1024)).astype(np.float32)
    ia, ib = rng.integers(0, 100, 200_000), rng.integers(0, 100, 200_000)
    tracemalloc.start()
    score, same = verifier.decide(features, ia, ib)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert score.shape == same.shape == (200_000,)
    assert peak < 64 << 20, f"peak {peak >> 20} MiB"
    expected, _ = verifier.decide(features, ia[:5], ib[:5])
    assert np.allclose(score[:5], expected)
