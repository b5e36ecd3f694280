"""siamese-export refuses bad checkpoints and options with one line, before writing anything."""

import pytest
import torch
from refusals import ERROR, USAGE, assert_refused

from siamese.cli import export as export_cli


@pytest.fixture(scope="module")
def checkpoint(small_export):
    ckpt, _, _ = small_export("contrastive")
    return ckpt


def edited(checkpoint, tmp_path, edit):
    raw = torch.load(checkpoint, weights_only=True)
    edit(raw)
    path = tmp_path / "edited.pt"
    torch.save(raw, path)
    return path


@pytest.mark.parametrize(
    "args, message, code",
    [
        (["--format", "tflite"], "Invalid value for '--format'", USAGE),
        (["--dtype", "int4"], "Invalid value for '--dtype'", USAGE),
        (["--verify-pairs", "0"], "Invalid value for '--verify-pairs'", USAGE),
        (["--dtype", "bf16", "--format", "onnx"], "ONNX opset 18 has no bfloat16 convolution", ERROR),
        (["--name", "a/b"], "'a/b' is not a plain name", USAGE),
        (["--triton-max-batch", "2147483648"], "Invalid value for '--triton-max-batch'", USAGE),
        (["--verify-pairs", str(10**9)], "Invalid value for '--verify-pairs'", USAGE),
    ],
)
def test_bad_options(checkpoint, tmp_path, args, message, code):
    assert_refused(
        export_cli.main,
        ["--checkpoint", checkpoint, "--untrained", "--out", tmp_path / "exports", *args],
        message,
        code,
        [tmp_path],
    )


def test_no_checkpoint_anywhere(tmp_path):
    args = ["--runs", tmp_path / "runs", "--out", tmp_path / "exports"]
    assert_refused(export_cli.main, args, "no finished training run under", ERROR, [tmp_path])
    assert not (tmp_path / "exports").exists()


def test_missing_and_unreadable_checkpoints(tmp_path):
    assert_refused(
        export_cli.main,
        ["--checkpoint", tmp_path / "nope.pt", "--untrained", "--out", tmp_path],
        "checkpoint not found",
        ERROR,
        [tmp_path],
    )
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 100)
    assert_refused(
        export_cli.main,
        ["--checkpoint", junk, "--untrained", "--out", tmp_path],
        "junk.pt: not a readable checkpoint",
        ERROR,
        [tmp_path],
    )


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("model_config"), "key 'model_config' is missing"),
        (lambda d: d.__setitem__("threshold", float("inf")), "key 'threshold' is inf, not a finite number"),
        (lambda d: d.__setitem__("threshold", "0.5"), "key 'threshold' should be a number, got str"),
        (lambda d: d["model_config"].__setitem__("image_size", 12), "image_size: 12 must be a multiple of 8"),
        (lambda d: d["model_config"].__setitem__("variant", "triplet"), "unknown variant 'triplet'"),
        (lambda d: d["normalization"].__setitem__("std", [0, 1, 1]), "std positive"),
        (lambda d: d.__setitem__("format", "something-else"), "not a siamese checkpoint"),
        (lambda d: d["model"].pop(next(iter(d["model"]))), "checkpoint weights do not fit"),
        (lambda d: d.__setitem__("data", {"data_set": 7}), "data: key 'data_set' should be str, got int"),
    ],
)
def test_edited_checkpoints_name_the_file_and_key(checkpoint, tmp_path, edit, message):
    path = edited(checkpoint, tmp_path, edit)
    assert_refused(
        export_cli.main,
        ["--checkpoint", path, "--untrained", "--out", tmp_path / "exports", "--format", "onnx"],
        message,
        ERROR,
        [tmp_path],
    )


def test_an_existing_export_needs_force(small_export, tmp_path):
    ckpt, dest, _ = small_export("contrastive")
    args = ["--checkpoint", ckpt, "--untrained", "--out", dest.parent, "--name", dest.name, "--format", "onnx"]
    assert_refused(export_cli.main, args, "exists; pass --force to replace it", ERROR, [dest.parent])


def test_two_checkpoints_cannot_share_one_name(checkpoint, tmp_path):
    args = [
        "--checkpoint",
        checkpoint,
        "--untrained",
        "--checkpoint",
        checkpoint,
        "--untrained",
        "--name",
        "one",
        "--out",
        tmp_path,
    ]
    assert_refused(export_cli.main, args, "--name needs a single --checkpoint", ERROR, [tmp_path])


def test_an_output_that_is_a_file_is_refused(checkpoint, tmp_path):
    blocker = tmp_path / "exports"
    blocker.write_text("x")
    args = ["--checkpoint", checkpoint, "--untrained", "--out", blocker, "--format", "onnx"]
    assert_refused(export_cli.main, args, "cannot write into .*exports", ERROR, [tmp_path])
