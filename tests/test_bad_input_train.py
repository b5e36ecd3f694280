"""siamese-train refuses bad input at parse time or before decoding any image, changing nothing."""

import json
import re

import pytest
import torch
from click.testing import CliRunner
from refusals import ERROR, USAGE, assert_refused

from siamese.artifacts.checkpoint import load_checkpoint
from siamese.cli import train as train_cli

TINY = ["--synthetic", "--image-size", "16", "--pairs-per-epoch", "64", "--variant", "contrastive"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    result = CliRunner().invoke(train_cli.main, [*TINY, "--epochs", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--image-size", "20", "20 must be a multiple of 8 between 8 and 1024"),
        ("--image-size", "4096", "4096 must be a multiple of 8"),
        ("--image-size", "big", "'big' is not an integer"),
        ("--lr", "nan", "'nan' is not a finite number"),
        ("--lr", "inf", "'inf' is not a finite number"),
        ("--lr", "0", "Invalid value for '--lr'"),
        ("--margin", "-1", "Invalid value for '--margin'"),
        ("--weight-decay", "nan", "not a finite number"),
        ("--warmup", "1", "Invalid value for '--warmup'"),
        ("--val-identities", "1.5", "Invalid value for '--val-identities'"),
        ("--epochs", "0", "Invalid value for '--epochs'"),
        ("--device", "gpu", "'gpu': expected auto, cpu, cuda or cuda:N"),
        ("--variant", "triplet", "Invalid value for '--variant'"),
        ("--negatives", "some", "Invalid value for '--negatives'"),
        ("--identities-per-batch", "1", "Invalid value for '--identities-per-batch'"),
        ("--seed", str(2**64), "Invalid value for '--seed'"),
        ("--val-pairs", str(10**10), "Invalid value for '--val-pairs'"),
        ("--epochs", str(10**9), "Invalid value for '--epochs'"),
        ("--batch-size", "2147483648", "Invalid value for '--batch-size'"),
    ],
)
def test_bad_option_values_fail_at_parse_time(tmp_path, option, value, message):
    args = [*TINY, "--out", tmp_path / "runs", option, value]
    assert_refused(train_cli.main, args, message, USAGE, [tmp_path])
    assert not (tmp_path / "runs").exists()


def test_a_bce_head_for_the_contrastive_variant_is_refused(tmp_path):
    args = [*TINY, "--head", "diff-prod", "--out", tmp_path]
    assert_refused(train_cli.main, args, "--head diff-prod is a bce head", ERROR, [tmp_path])


def test_an_existing_run_is_not_overwritten(finished):
    assert_refused(
        train_cli.main, [*TINY, "--out", finished], "exists: pass --resume to continue it", ERROR, [finished]
    )


def test_resuming_a_different_model_is_refused_before_any_work(finished):
    args = [*TINY, "--out", finished, "--resume", "--epochs", "2", "--margin", "7"]
    assert_refused(
        train_cli.main,
        args,
        r"was trained as ModelConfig\(.*margin=90.0.*not ModelConfig\(.*margin=7.0",
        ERROR,
        [finished],
    )


def test_resuming_a_finished_run_asks_for_more_epochs(finished):
    args = [*TINY, "--out", finished, "--resume", "--epochs", "1"]
    assert_refused(train_cli.main, args, "already finished 1 epochs; raise --epochs", ERROR, [finished])


def test_an_output_that_is_a_file_is_refused_before_any_work(tmp_path):
    blocker = tmp_path / "runs"
    blocker.write_text("not a folder")
    assert_refused(train_cli.main, [*TINY, "--out", blocker], "cannot write into .*runs", ERROR, [tmp_path])


def test_missing_data_is_one_line(tmp_path):
    args = ["--data", tmp_path / "nowhere", "--variant", "contrastive", "--out", tmp_path / "runs"]
    assert_refused(train_cli.main, args, "nowhere", ERROR, [tmp_path])


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present: asking for it is not an error")
def test_cuda_without_a_gpu_is_refused(tmp_path):
    assert_refused(
        train_cli.main, [*TINY, "--device", "cuda", "--out", tmp_path], "CUDA is not available", ERROR, [tmp_path]
    )


def test_an_empty_pair_list_is_refused_before_decoding(lfw_dir, tmp_path, cache_dir):
    empty = tmp_path / "empty.txt"
    empty.write_text("0\n")
    args = ["--data", lfw_dir, "--train-pairs", empty, "--cache", cache_dir, "--out", tmp_path / "runs"]
    assert_refused(
        train_cli.main, [*args, "--variant", "contrastive"], "empty.txt: the list holds no pairs", ERROR, [tmp_path]
    )


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.__setitem__("threshold", float("nan")), "key 'threshold' is nan, not a finite number"),
        (lambda d: d.__setitem__("epoch", "three"), "key 'epoch' should be int, got str"),
        (lambda d: d.__setitem__("history", {"a": 1}), "key 'history' should be list, got dict"),
        (
            lambda d: d["model_config"].__setitem__("image_size", 10**6),
            "image_size: 1000000 must be a multiple of 8 between 8 and 1024",
        ),
        (lambda d: d.pop("model"), "key 'model' is missing"),
        (lambda d: d.__setitem__("format_version", 99), "checkpoint format 99 is newer"),
    ],
)
def test_an_edited_checkpoint_is_refused_with_the_file_and_key(finished, tmp_path, edit, message):
    import shutil

    out = tmp_path / "runs"
    shutil.copytree(finished, out)
    path = out / "synthetic" / "contrastive" / "checkpoint.pt"
    raw = torch.load(path, weights_only=True)
    edit(raw)
    torch.save(raw, path)
    args = [*TINY, "--out", out, "--resume", "--epochs", "2"]
    output = assert_refused(train_cli.main, args, message, ERROR, [out])
    assert str(path) in output


def test_metrics_log_keeps_one_line_per_epoch(finished):
    lines = (finished / "synthetic" / "contrastive" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1]
    assert load_checkpoint(finished / "synthetic" / "contrastive" / "checkpoint.pt").epoch == 1


@pytest.mark.parametrize(
    "option, value, recorded",
    [
        ("--lr", "1e-3", "lr=0.0003"),
        ("--sampling", "pairs", "sampling='identity'"),
        ("--weight-decay", "0.1", "weight_decay=0.0"),
        ("--no-augment", None, "augment=True"),
    ],
)
def test_resuming_with_another_recipe_is_refused(finished, option, value, recorded):
    args = [*TINY, "--out", finished, "--resume", "--epochs", "2", option, *([value] if value else [])]
    message = (
        rf"was trained with {re.escape(recorded)}, not .*; resume with the same options, or pass --allow-recipe-change"
    )
    assert_refused(train_cli.main, args, message, ERROR, [finished])


def test_an_allowed_recipe_change_is_recorded_in_the_epoch_it_starts(finished, tmp_path):
    import shutil

    out = tmp_path / "runs"
    shutil.copytree(finished, out)
    args = [*TINY, "--out", out, "--resume", "--epochs", "2", "--lr", "1e-3", "--allow-recipe-change"]
    result = CliRunner().invoke(train_cli.main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(out / "synthetic" / "contrastive" / "checkpoint.pt")
    assert [h.recipe_changes for h in ckpt.history] == [{}, {"lr": [0.0003, 0.001]}]
    lines = [json.loads(x) for x in (out / "synthetic" / "contrastive" / "metrics.jsonl").read_text().splitlines()]
    assert "recipe_changes" not in lines[0] and lines[1]["recipe_changes"] == {"lr": [0.0003, 0.001]}
    assert ckpt.config["lr"] == 0.001


def test_a_run_folder_being_trained_is_refused_and_left_alone(finished):
    from siamese.core.files import exclusive_lock

    run = finished / "synthetic" / "contrastive"
    with exclusive_lock(run.with_name(".contrastive.lock"), "a run"):
        args = [*TINY, "--out", finished, "--resume", "--epochs", "2"]
        assert_refused(
            train_cli.main, args, rf"run {run} is being written by another process \(pid \d+\)", ERROR, [run]
        )
