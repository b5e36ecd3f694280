"""siamese-eval refuses bad input with one line and the right exit code, before writing anything."""

import pytest
from refusals import ERROR, GOOD_PAIRS, METADATA_EDITS, USAGE, assert_refused, edited_export, pair_list

from siamese.cli import evaluate as evaluate_cli


def test_eval_needs_an_existing_source_and_pair_file(tmp_path):
    assert_refused(
        evaluate_cli.main, [tmp_path / "nope", "--pairs", tmp_path / "p.txt"], "does not exist", USAGE, [tmp_path]
    )
    pairs = pair_list(tmp_path, GOOD_PAIRS)
    assert_refused(
        evaluate_cli.main,
        [tmp_path, "--pairs", pairs],
        "neither a checkpoint file nor an export folder",
        ERROR,
        [tmp_path],
    )


def test_eval_needs_labels_of_both_kinds(contrastive_export, tmp_path, image_folder):
    for text, message in [
        ("A/1.png A/2.png 1\nA/1.png B/1.png 1\n", "every pair is labelled 1; evaluation needs both kinds"),
        ("A/1.png A/2.png\n", "expected 'imageA imageB label', got 2 fields"),
    ]:
        pairs = pair_list(tmp_path, text)
        args = [contrastive_export, "--pairs", pairs, "--images", image_folder, "--out", tmp_path / "eval"]
        assert_refused(evaluate_cli.main, args, message, ERROR, [tmp_path])
        assert not (tmp_path / "eval").exists()


def test_eval_of_an_unfinished_checkpoint(small_export, tmp_path, image_folder):
    import torch

    ckpt, _, _ = small_export("contrastive")
    raw = torch.load(ckpt, weights_only=True)
    raw["threshold"] = None
    torch.save(raw, tmp_path / "unfinished.pt")
    pairs = pair_list(tmp_path, GOOD_PAIRS)
    args = [tmp_path / "unfinished.pt", "--pairs", pairs, "--images", image_folder]
    assert_refused(evaluate_cli.main, args, "has no decision threshold", ERROR, [tmp_path])


def test_eval_output_that_is_a_file(contrastive_export, tmp_path, image_folder):
    (tmp_path / "eval").write_text("x")
    pairs = pair_list(tmp_path, GOOD_PAIRS)
    args = [contrastive_export, "--pairs", pairs, "--images", image_folder, "--out", tmp_path / "eval"]
    assert_refused(evaluate_cli.main, args, "is a file", USAGE, [tmp_path])


@pytest.mark.parametrize("edit, message", METADATA_EDITS)
def test_eval_of_an_edited_export(contrastive_export, tmp_path, image_folder, edit, message):
    copy = edited_export(contrastive_export, tmp_path, edit)
    pairs = pair_list(tmp_path, GOOD_PAIRS)
    args = [copy, "--pairs", pairs, "--images", image_folder, "--out", tmp_path / "eval"]
    output = assert_refused(evaluate_cli.main, args, message, ERROR, [tmp_path])
    assert "metadata.json" in output


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "pair file is empty"),
        ("A/1.png A/1.png 1\nA/1.png B/1.png 0\n", "pairs image 'A/1.png' with itself"),
        ("A/1.png ../B/1.png 1\nA/1.png B/1.png 0\n", "image path '../B/1.png'"),
        ("A/1.png A/9.png 1\nA/1.png B/1.png 0\n", "image not found: .*A/9.png"),
    ],
)
def test_eval_of_a_bad_pair_list(contrastive_export, tmp_path, image_folder, text, message):
    pairs = pair_list(tmp_path, text)
    args = [contrastive_export, "--pairs", pairs, "--images", image_folder, "--out", tmp_path / "eval"]
    assert_refused(evaluate_cli.main, args, message, ERROR, [tmp_path])
    assert not (tmp_path / "eval").exists()


def test_eval_with_an_image_root_that_is_not_a_folder(contrastive_export, tmp_path):
    pairs = pair_list(tmp_path, GOOD_PAIRS)
    args = [contrastive_export, "--pairs", pairs, "--images", tmp_path / "none", "--out", tmp_path / "eval"]
    assert_refused(evaluate_cli.main, args, "image root .*none is not a folder", ERROR, [tmp_path])


def test_eval_with_an_unknown_runtime(contrastive_export, tmp_path, image_folder):
    pairs = pair_list(tmp_path, GOOD_PAIRS)
    assert_refused(
        evaluate_cli.main,
        [contrastive_export, "--pairs", pairs, "--runtime", "tflite"],
        "Invalid value for '--runtime'",
        USAGE,
        [tmp_path],
    )
