"""torchrun: two gloo processes on the CPU train one model, and a single process resumes it."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from siamese.artifacts.checkpoint import load_checkpoint
from siamese.cli import train as train_cli
from siamese.core.model import SiameseNet
from siamese.training.distributed import Distributed, weights_digest

TINY = ["--synthetic", "--image-size", "16", "--compile", "off", "--variant", "bce"]


def test_shards_are_disjoint_equal_and_cover_all_that_divides_evenly():
    items = list(range(11))
    shards = [Distributed(rank, rank, 3).shard(items) for rank in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    assert sorted(sum(shards, [])) == list(range(9))
    assert Distributed().shard(items) == items


@pytest.fixture(scope="module")
def torchrun_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "siamese.cli.train", *TINY, "--epochs", "2", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / "synthetic" / "bce-diff-prod", done


def test_two_ranks_end_with_identical_weights_and_rank_0_alone_writes(torchrun_run):
    run, done = torchrun_run
    summary = json.loads((run / "summary.json").read_text())
    assert summary["processes"] == 2
    ckpt = load_checkpoint(run / "checkpoint.pt")
    model = SiameseNet("bce", 16)
    model.load_state_dict(ckpt.model)
    digests = summary["rank_weights_sha256"]
    assert len(digests) == 2 and digests[0] == digests[1] == weights_digest(model)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]  # one line per epoch: rank 1 writes nothing
    assert done.stdout.count("| synthetic | bce |") == 1  # one results table


def test_a_torchrun_checkpoint_resumes_in_a_single_process(torchrun_run):
    run, _ = torchrun_run
    out = run.parents[1]
    result = CliRunner().invoke(train_cli.main, [*TINY, "--epochs", "3", "--resume", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2, 3]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["processes"] == 1 and summary["epochs"] == 3 and load_checkpoint(run / "checkpoint.pt").epoch == 3
