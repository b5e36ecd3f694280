"""siamese-verify and siamese-eval refuse bad input with one line and the right exit code."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from refusals import ERROR, USAGE, assert_refused

from siamese import cli
from siamese.artifacts import METADATA
from siamese.export import write_manifest


@pytest.fixture(scope="module")
def export(small_export):
    _, dest, _ = small_export("contrastive")
    return dest


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    for person in ("A", "B"):
        (tmp_path / "img" / person).mkdir(parents=True)
        for i in (1, 2):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                tmp_path / "img" / person / f"{i}.png"
            )
    return tmp_path / "img"


def pair_list(tmp_path, text, name="pairs.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = "A/1.png A/2.png 1\nA/1.png B/1.png 0\n"


def edited_export(export, tmp_path, edit):
    """A copy with its metadata edited and the manifest re-hashed, as a careless editor would."""
    copy = tmp_path / "export"
    shutil.copytree(export, copy)
    meta = json.loads((copy / METADATA).read_text())
    edit(meta)
    (copy / METADATA).write_text(json.dumps(meta))
    write_manifest(copy)
    return copy


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
    ],
)
def test_bad_usage(tmp_path, args, message):
    assert_refused(cli.verify, args, message, USAGE, [tmp_path])


def test_not_an_export(tmp_path):
    assert_refused(cli.verify, ["--export", tmp_path, "a.png", "b.png"], "not an export folder", ERROR, [tmp_path])


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.__setitem__("threshold", float("nan")), "threshold nan is not finite"),
        (lambda m: m.pop("variant"), "key 'variant' is missing"),
        (lambda m: m.__setitem__("image_size", "128"), "key 'image_size' is missing or not a int"),
        (lambda m: m.__setitem__("image_size", 12), "image_size 12 is not a multiple of 8"),
        (lambda m: m.__setitem__("dtype", "int3"), "dtype 'int3' is not one of"),
        (lambda m: m.__setitem__("higher_is_same", "yes"), "key 'higher_is_same' is missing or not a bool"),
    ],
)
def test_edited_metadata_is_refused_with_the_file_and_key(export, tmp_path, edit, message):
    copy = edited_export(export, tmp_path, edit)
    output = assert_refused(cli.verify, ["--export", copy, "a.png", "b.png"], message, ERROR, [tmp_path])
    assert "metadata.json" in output


def test_a_modified_artifact_fails_its_hash(export, tmp_path, images):
    copy = tmp_path / "export"
    shutil.copytree(export, copy)
    with open(copy / "embedding.onnx", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01")
    pairs = pair_list(tmp_path, GOOD)
    args = ["--export", copy, "--pairs", pairs, "--images", images]
    assert_refused(cli.verify, args, "embedding.onnx: sha256 differs from the manifest", ERROR, [tmp_path])


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
def test_bad_pair_lists(export, tmp_path, images, text, message):
    pairs = pair_list(tmp_path, text)
    args = ["--export", export, "--pairs", pairs, "--images", images, "--output", tmp_path / "out.csv"]
    assert_refused(cli.verify, args, message, ERROR, [tmp_path])
    assert not (tmp_path / "out.csv").exists()


def test_a_linked_image_outside_the_root_is_refused(export, tmp_path, images):
    (tmp_path / "secret.png").write_bytes((images / "A" / "1.png").read_bytes())
    (images / "B" / "3.png").symlink_to(tmp_path / "secret.png")
    pairs = pair_list(tmp_path, "A/1.png B/3.png 0\n")
    args = ["--export", export, "--pairs", pairs, "--images", images]
    assert_refused(cli.verify, args, "outside the image root", ERROR, [tmp_path])


def test_an_image_root_that_is_not_a_folder(export, tmp_path):
    pairs = pair_list(tmp_path, GOOD)
    args = ["--export", export, "--pairs", pairs, "--images", tmp_path / "none"]
    assert_refused(cli.verify, args, "image root .*none is not a folder", ERROR, [tmp_path])


def test_duplicate_pairs_are_answered_and_reported(export, tmp_path, images):
    from click.testing import CliRunner

    pairs = pair_list(tmp_path, GOOD + "A/2.png A/1.png 1\n")
    result = CliRunner().invoke(cli.verify, ["--export", str(export), "--pairs", str(pairs), "--images", str(images)])
    assert result.exit_code == 0 and "warning: " in result.output and "1 repeated pairs" in result.output
    assert "3 pairs" in result.output


# -- siamese-eval --


def test_eval_needs_an_existing_source_and_pair_file(tmp_path):
    assert_refused(
        cli.evaluate, [tmp_path / "nope", "--pairs", tmp_path / "p.txt"], "does not exist", USAGE, [tmp_path]
    )
    pairs = pair_list(tmp_path, GOOD)
    assert_refused(
        cli.evaluate, [tmp_path, "--pairs", pairs], "neither a checkpoint file nor an export folder", ERROR, [tmp_path]
    )


def test_eval_needs_labels_of_both_kinds(export, tmp_path, images):
    for text, message in [
        ("A/1.png A/2.png 1\nA/1.png B/1.png 1\n", "every pair is labelled 1; evaluation needs both kinds"),
        ("A/1.png A/2.png\n", "expected 'imageA imageB label', got 2 fields"),
    ]:
        pairs = pair_list(tmp_path, text)
        args = [export, "--pairs", pairs, "--images", images, "--out", tmp_path / "eval"]
        assert_refused(cli.evaluate, args, message, ERROR, [tmp_path])
        assert not (tmp_path / "eval").exists()


def test_eval_of_an_unfinished_checkpoint(small_export, tmp_path, images):
    import torch

    ckpt, _, _ = small_export("contrastive")
    raw = torch.load(ckpt, weights_only=True)
    raw["threshold"] = None
    torch.save(raw, tmp_path / "unfinished.pt")
    pairs = pair_list(tmp_path, GOOD)
    args = [tmp_path / "unfinished.pt", "--pairs", pairs, "--images", images]
    assert_refused(cli.evaluate, args, "has no decision threshold", ERROR, [tmp_path])


def test_eval_output_that_is_a_file(export, tmp_path, images):
    (tmp_path / "eval").write_text("x")
    pairs = pair_list(tmp_path, GOOD)
    args = [export, "--pairs", pairs, "--images", images, "--out", tmp_path / "eval"]
    assert_refused(cli.evaluate, args, "is a file", USAGE, [tmp_path])
