"""Faults: a full disk, a kill in the middle of a write or of training, a diverging loss.
Nothing is lost and nothing partial is left where a good file is expected."""

import dataclasses
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from siamese.artifacts.checkpoint import load_checkpoint
from siamese.cli import export as export_cli
from siamese.cli import train as train_cli
from siamese.core.errors import SiameseError
from siamese.core.files import atomic_write, write_json

TINY = ["--synthetic", "--image-size", "16", "--pairs-per-epoch", "256", "--variant", "contrastive"]


def no_space(tmp: Path) -> None:
    tmp.write_bytes(b"half a file")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))


def test_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "summary.json"
    write_json(target, {"good": True})
    with pytest.raises(SiameseError, match=f"cannot write {target}: No space left on device"):
        atomic_write(target, no_space)
    assert json.loads(target.read_text()) == {"good": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]  # no temporary file left


def test_a_killed_write_leaves_only_a_temporary_file_that_the_next_write_removes(tmp_path):
    target = tmp_path / "checkpoint.pt"
    stale = tmp_path / ".checkpoint.pt.x1y2.tmp"  # what a SIGKILL during torch.save leaves
    stale.write_bytes(b"partial")
    other = tmp_path / ".other.pt.a.tmp"  # another file's: not ours to remove
    other.write_bytes(b"x")
    write_json(target, [1])
    assert not stale.exists() and other.exists() and json.loads(target.read_text()) == [1]


def test_a_full_disk_during_training_stops_with_the_path_and_the_last_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "runs"
    assert CliRunner().invoke(train_cli.main, [*TINY, "--epochs", "1", "--out", str(out)]).exit_code == 0
    ckpt = out / "synthetic" / "contrastive" / "checkpoint.pt"
    before = ckpt.read_bytes()

    def full(path, checkpoint):
        atomic_write(path, no_space)

    monkeypatch.setattr("siamese.training.run.save_checkpoint", full)
    result = CliRunner().invoke(train_cli.main, [*TINY, "--epochs", "2", "--out", str(out), "--resume"])
    assert result.exit_code == 1 and f"cannot write {ckpt}: No space left on device" in result.output
    assert ckpt.read_bytes() == before
    lines = (ckpt.parent / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1]  # epoch 2 was not logged: it was not saved


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import siamese.training.loop

    real = siamese.training.loop.batch_loss
    calls = {"n": 0}

    def diverging(*args, **kwargs):
        loss, pairs, images = real(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] > 3 else loss), pairs, images

    out = tmp_path / "runs"
    assert CliRunner().invoke(train_cli.main, [*TINY, "--epochs", "1", "--out", str(out)]).exit_code == 0
    run = out / "synthetic" / "contrastive"
    good = load_checkpoint(run / "checkpoint.pt")
    monkeypatch.setattr(siamese.training.loop, "batch_loss", diverging)
    result = CliRunner().invoke(train_cli.main, [*TINY, "--epochs", "3", "--out", str(out), "--resume"])
    assert result.exit_code == 1 and "contrastive: loss became nan at epoch 2" in result.output
    kept = load_checkpoint(run / "checkpoint.pt")
    assert kept.epoch == 1 and all(torch.equal(kept.model[k], good.model[k]) for k in good.model)


def test_a_resume_logs_the_epoch_that_a_kill_saved_but_did_not_log(tmp_path):
    out = tmp_path / "runs"
    assert CliRunner().invoke(train_cli.main, [*TINY, "--epochs", "2", "--out", str(out)]).exit_code == 0
    metrics = out / "synthetic" / "contrastive" / "metrics.jsonl"
    logged = metrics.read_text().splitlines()
    metrics.write_text(logged[0] + "\n")  # killed after epoch 2's checkpoint, before its line
    result = CliRunner().invoke(train_cli.main, [*TINY, "--epochs", "3", "--out", str(out), "--resume"])
    assert result.exit_code == 0, result.output
    lines = metrics.read_text().splitlines()
    assert lines[:2] == logged and [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]


def train_process(out: Path, epochs: int, resume: bool = False, output=subprocess.PIPE) -> subprocess.Popen:
    args = [*TINY, "--pairs-per-epoch", "2048", "--epochs", str(epochs), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread: the same float sums in every run
    code = "from siamese.cli.train import main; main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args, *(["--resume"] if resume else [])],
        stdout=output,
        stderr=subprocess.STDOUT,
        env=env,
    )


def without_times(metrics: Path) -> list[dict]:
    return [
        {k: v for k, v in json.loads(x).items() if k not in ("epoch_s", "images_per_s", "data_s")}
        for x in metrics.read_text().splitlines()
    ]


def test_sigkill_then_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    # one thread each, so the two runs share the machine's cores; its output to a file, not a pipe nobody reads
    uninterrupted = train_process(whole, 3, output=(tmp_path / "whole.log").open("wb"))
    proc = train_process(killed, 3)
    metrics = killed / "synthetic" / "contrastive" / "metrics.jsonl"
    deadline = time.time() + 300
    while not (metrics.exists() and metrics.read_text().count("\n") >= 1) and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # in epoch 2, or while its checkpoint is being written
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    logged_before_kill = metrics.read_text().count("\n")
    saved_before_kill = load_checkpoint(metrics.parent / "checkpoint.pt").epoch
    # equal, or one more where the kill fell between an epoch's checkpoint and its log line
    assert 1 <= logged_before_kill <= saved_before_kill < 3

    resumed = train_process(killed, 3, resume=True)
    output = resumed.communicate(timeout=300)[0].decode()
    assert resumed.returncode == 0, output
    assert f"after epoch {saved_before_kill}" in output
    assert uninterrupted.wait(timeout=300) == 0

    a = load_checkpoint(whole / "synthetic" / "contrastive" / "checkpoint.pt")
    b = load_checkpoint(killed / "synthetic" / "contrastive" / "checkpoint.pt")
    assert a.model.keys() == b.model.keys() and all(torch.equal(a.model[k], b.model[k]) for k in a.model)
    assert a.threshold == b.threshold
    assert without_times(whole / "synthetic" / "contrastive" / "metrics.jsonl") == without_times(metrics)
    leftovers = [p.name for p in metrics.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_a_full_disk_during_export_keeps_the_old_export_and_leaves_no_partial_folder(small_export, monkeypatch):
    from refusals import snapshot

    ckpt, dest, _ = small_export("contrastive")
    before = snapshot(dest.parent)

    def full(module, graph, path, meta, calibration=None):
        path.write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    from siamese.artifacts.formats import FORMATS

    monkeypatch.setitem(FORMATS, "onnx", dataclasses.replace(FORMATS["onnx"], writer=full))
    result = CliRunner().invoke(
        export_cli.main,
        [
            "--checkpoint",
            str(ckpt),
            "--untrained",
            "--out",
            str(dest.parent),
            "--name",
            dest.name,
            "--format",
            "onnx",
            "--force",
        ],
    )
    assert result.exit_code == 1 and "writing embedding.onnx failed: OSError: [Errno 28] No space left" in result.output
    assert snapshot(dest.parent) == before
    assert [p.name for p in dest.parent.iterdir() if p.name.startswith(".")] == []


def _run_with_file_size_limit(limit_bytes: int, *args: str) -> subprocess.CompletedProcess:
    """A toolkit command in a child whose files may not grow beyond `limit_bytes` (as `ulimit -f`):
    writes fail with EFBIG, as they do on a full disk with ENOSPC, through the real writers."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, preexec_fn=limit, timeout=600, check=False
    )


def test_a_file_size_limit_during_training_is_one_line_naming_the_checkpoint(tmp_path):
    out = tmp_path / "runs"
    run = _run_with_file_size_limit(
        64 * 1024, "siamese.cli.train", *TINY, "--compile", "off", "--epochs", "1", "--out", str(out)
    )
    ckpt = out / "synthetic" / "contrastive" / "checkpoint.pt"
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip().splitlines()[-1] == f"Error: cannot write {ckpt}: File too large"
    assert not ckpt.exists() and list(ckpt.parent.glob(".checkpoint.pt.*")) == []


def test_a_file_size_limit_during_export_is_one_line_and_leaves_nothing(small_export, tmp_path):
    ckpt, _, _ = small_export("contrastive")
    out = tmp_path / "exports"
    run = _run_with_file_size_limit(
        64 * 1024, "siamese.cli.export", "--checkpoint", str(ckpt), "--untrained", "--out", str(out), "--format", "onnx"
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip().splitlines()[-1].endswith(": File too large")
    assert "cannot write the export" in run.stderr and list(out.iterdir()) == []


def test_result_files_get_the_permissions_of_any_new_file(tmp_path):
    """Not mkstemp's private 0600: a result written under umask 022 is 0644 like the rest."""
    import siamese.core.files

    write_json(tmp_path / "bench.json", {"x": 1})
    mode = (tmp_path / "bench.json").stat().st_mode & 0o777
    assert mode == 0o666 & ~siamese.core.files._UMASK
    if siamese.core.files._UMASK == 0o022:
        assert mode == 0o644


HOLD_A_COPY = """
import os, signal, sys
from siamese.artifacts.folder import ExportFolder
export = ExportFolder.open(sys.argv[1])
export.check(next(iter(export.manifest["files"])))
print(export._private, flush=True)
if sys.argv[2] == "killed":
    os.kill(os.getpid(), signal.SIGKILL)
sys.stdin.read()  # a live owner, until the test closes its stdin
"""


def test_the_copies_of_a_killed_process_are_removed_by_the_next_one_and_a_live_ones_kept(
    contrastive_export, tmp_path, monkeypatch
):
    """A process killed outright cannot remove the verified copies it loads from; the next process
    that opens an export removes them, and never those of a process still running, nor a folder
    without an owner file (one left by an older version could still be in use)."""
    import tempfile

    from siamese.artifacts.folder import ExportFolder

    env = {**os.environ, "TMPDIR": str(tmp_path)}

    def holder(how: str) -> tuple[subprocess.Popen, Path]:
        command = [sys.executable, "-c", HOLD_A_COPY, str(contrastive_export), how]
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        copies = process.stdout.readline().strip()
        assert copies, f"the {how} holder printed no folder"
        return process, Path(copies)

    live, live_copies = holder("live")
    killed, killed_copies = holder("killed")  # its own sweep finds the live folder locked
    assert killed.wait(timeout=60) == -signal.SIGKILL and killed_copies.is_dir() and live_copies.is_dir()
    ownerless = tmp_path / "siamese-export-ownerless"
    ownerless.mkdir()
    os.utime(ownerless, (time.time() - 7 * 86400,) * 2)

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    export = ExportFolder.open(contrastive_export)
    export.check(next(iter(export.manifest["files"])))
    assert sorted(tmp_path.iterdir()) == sorted([live_copies, ownerless, export._private])
    live.communicate("", timeout=60)
    assert live.returncode == 0 and not live_copies.exists()  # an owner that ends removes its own
    del export
    assert sorted(tmp_path.iterdir()) == [ownerless]
