import json
import re
import time

import pytest
import torch
from click.testing import CliRunner

from bench.cli import main as bench_main
from siamese.artifacts.checkpoint import load_checkpoint, save_checkpoint
from siamese.cli import data as data_cli
from siamese.cli import evaluate as evaluate_cli
from siamese.cli import export as export_cli
from siamese.cli import train as train_cli
from siamese.cli import verify as verify_cli
from siamese.core.errors import SiameseError
from siamese.core.model import SiameseNet
from siamese.core.provenance import cxx_compiler, native_bf16
from siamese.training.config import TrainConfig
from siamese.training.loop import StepLoss, learning_rate, make_optimizer, resolve_amp, training_embedding

SMALL = ["--synthetic", "--image-size", "16", "--pairs-per-epoch", "256", "--batch-size", "32"]
# eager fp32: tests below cover the compiled and bf16 defaults; compiling every run would slow CI by minutes
FAST = [*SMALL, "--amp", "none", "--compile", "off"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    result = CliRunner().invoke(train_cli.main, [*FAST, "--variant", "both", "--epochs", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result


@pytest.mark.parametrize("variant", ["bce", "contrastive"])
def test_train_writes_checkpoint_metrics_roc_and_summary(trained, variant):
    out, result = trained
    run = out / "synthetic" / {"bce": "bce-diff-prod", "contrastive": "contrastive"}[variant]
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]
    assert all(x["data_set"] == "synthetic" and x["train_loss"] > 0 for x in lines)
    assert all(0 <= x["val_accuracy"] <= 1 and 0 <= x["val_auc"] <= 1 for x in lines)  # chosen on validation
    assert lines[-1]["lr_end"] < 1e-6 < lines[0]["lr_end"]  # the cosine ends near zero
    summary = json.loads((run / "summary.json").read_text())
    assert summary["data_set"] == "synthetic" and summary["variant"] == variant
    for key in ("accuracy", "threshold", "auc", "eer", "epochs", "wall_time_s", "git_commit", "split"):
        assert key in summary
    for plot in ("roc.png", "scores.png", "curves.png"):
        assert (run / plot).read_bytes()[:4] == b"\x89PNG"
    evaluation = json.loads((run / "eval.json").read_text())  # siamese-eval's figures on the test pairs
    assert evaluation["accuracy"] == pytest.approx(summary["accuracy"], abs=1e-6) and set(summary["tar_at_far"]) == {
        "0.01",
        "0.001",
    }
    ckpt = load_checkpoint(run / "checkpoint.pt")
    assert ckpt.epoch == 2 and ckpt.threshold == summary["threshold"]
    assert ckpt.normalization.mean == (0.5, 0.5, 0.5) and ckpt.variant == variant
    assert ckpt.optimizer and ckpt.rng and ckpt.config["variant"] == variant
    assert ckpt.config["negatives"] == {"bce": "all", "contrastive": "hard"}[variant]  # each variant's own
    head = "diff-prod" if variant == "bce" else "-"  # the bare default trains the comparing head
    assert (
        "synthetic face set (--synthetic)" in result.output
        and f"| synthetic | {variant} | {head} | 2 |" in result.output
    )
    assert summary["head"] == ("diff-prod" if variant == "bce" else "concat")
    assert summary["threshold_on"] == "validation pairs"
    assert 0 <= summary["val_accuracy"] <= 1 and "held out" in summary["data"]["validation"]


def test_resume_continues_from_the_last_epoch(trained):
    out, _ = trained
    result = CliRunner().invoke(
        train_cli.main, [*FAST, "--variant", "contrastive", "--epochs", "3", "--out", str(out), "--resume"]
    )
    assert result.exit_code == 0, result.output
    run = out / "synthetic" / "contrastive"
    assert [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert load_checkpoint(run / "checkpoint.pt").epoch == 3


def test_existing_run_is_not_overwritten_without_resume(trained):
    out, _ = trained
    before = (out / "synthetic" / "bce-diff-prod" / "checkpoint.pt").read_bytes()
    result = CliRunner().invoke(train_cli.main, [*FAST, "--variant", "bce", "--epochs", "1", "--out", str(out)])
    assert result.exit_code != 0 and "pass --resume" in result.output
    assert (out / "synthetic" / "bce-diff-prod" / "checkpoint.pt").read_bytes() == before


def test_bad_data_is_a_one_line_error(tmp_path):
    (tmp_path / "lfw").mkdir()
    (tmp_path / "lfw" / "pairsDevTrain.txt").write_text("oops\n")
    result = CliRunner().invoke(train_cli.main, ["--data", str(tmp_path / "lfw"), "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip().startswith("Error: ") and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_malicious_pickle_checkpoint_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "siamese-checkpoint", "payload": Evil()}, path)
    from siamese.core.errors import SiameseError

    with pytest.raises(SiameseError, match="refused to load"):
        load_checkpoint(path)


def test_atomic_checkpoint_write_keeps_the_old_file_on_failure(tmp_path):
    from siamese.artifacts.checkpoint import Checkpoint
    from siamese.core.model import ModelConfig

    path = tmp_path / "c.pt"
    save_checkpoint(path, Checkpoint(model={"x": torch.ones(2)}, model_config=ModelConfig("contrastive", 16)))

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_checkpoint(path, Checkpoint(model={"x": Unsaveable()}, model_config=ModelConfig("contrastive", 16)))
    assert torch.equal(load_checkpoint(path).model["x"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d.pop("model_config"), "key 'model_config' is missing"),
        (lambda d: d.update(model="weights"), "key 'model' should be dict, got str"),
        (lambda d: d.update(threshold="0.5"), "key 'threshold' should be a number, got str"),
        (lambda d: d["model_config"].update(image_size=7), "invalid model_config"),
        (lambda d: d.update(format_version=99), "newer than this version reads"),
    ],
)
def test_edited_checkpoints_are_refused_with_the_key_named(tmp_path, edit, match):
    from siamese.artifacts.checkpoint import Checkpoint
    from siamese.core.errors import SiameseError
    from siamese.core.model import ModelConfig

    raw = Checkpoint(model={"x": torch.ones(2)}, model_config=ModelConfig("contrastive", 16)).to_dict()
    edit(raw)
    torch.save(raw, tmp_path / "c.pt")
    with pytest.raises(SiameseError, match=match) as info:
        load_checkpoint(tmp_path / "c.pt")
    assert str(tmp_path / "c.pt") in str(info.value)


def test_fetch_without_network_fails_fast_and_names_data_option(tmp_path, monkeypatch):
    import socket
    import urllib.request

    def no_dns(*args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", no_dns)
    start = time.monotonic()
    result = CliRunner().invoke(data_cli.main, ["fetch", "--dest", str(tmp_path / "lfw")])
    assert result.exit_code == 1 and "--data PATH" in result.output
    assert time.monotonic() - start < 5


@pytest.mark.parametrize(
    "command", [train_cli.main, export_cli.main, verify_cli.main, evaluate_cli.main, data_cli.main, bench_main]
)
def test_every_console_script_answers_help(command):
    result = CliRunner().invoke(command, ["--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


def test_fetch_checks_sha256_and_keeps_nothing_bad(tmp_path):
    import hashlib

    from siamese.core.errors import SiameseError
    from siamese.data.fetch import RemoteFile, fetch_lfw

    src = tmp_path / "pairs.txt"
    src.write_text("1\nA\t1\t2\nA\t1\tB\t1\n")
    good = RemoteFile("pairs.txt", src.as_uri(), hashlib.sha256(src.read_bytes()).hexdigest())
    dest = fetch_lfw(tmp_path / "dl", retries=1, files=(good,))
    assert (dest / "pairs.txt").read_bytes() == src.read_bytes()
    bad = RemoteFile("other.txt", src.as_uri(), "0" * 64)
    with pytest.raises(SiameseError, match="sha256 mismatch"):
        fetch_lfw(tmp_path / "dl", retries=2, delay=0, files=(bad,))
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["pairs.txt"]


def test_without_lfw_training_stops_and_names_the_ways_to_get_data(monkeypatch, tmp_path):
    """No guessed data: the synthetic set is used only when asked for."""
    import siamese.training.run

    monkeypatch.setattr(siamese.training.run, "find_lfw", lambda cache: None)
    with pytest.raises(SiameseError, match="no LFW found .*siamese-data fetch, pass --data PATH .*or --synthetic"):
        siamese.training.run.load_dataset(TrainConfig(image_size=16))
    result = CliRunner().invoke(train_cli.main, ["--out", str(tmp_path / "runs"), "--image-size", "16"])
    assert result.exit_code == 1 and "no LFW found" in result.output and not (tmp_path / "runs").exists()


def test_the_diff_prod_head_is_trained_exported_and_named_everywhere(tmp_path):
    from siamese.artifacts.folder import ExportFolder
    from siamese.tasks.export import export_checkpoint

    out = tmp_path / "runs"
    args = [*FAST, "--variant", "bce", "--head", "diff-prod", "--epochs", "1", "--out", str(out)]
    result = CliRunner().invoke(train_cli.main, args)
    assert result.exit_code == 0, result.output
    run = out / "synthetic" / "bce-diff-prod"
    assert "| synthetic | bce | diff-prod | 1 |" in result.output
    assert json.loads((run / "summary.json").read_text())["head"] == "diff-prod"
    assert load_checkpoint(run / "checkpoint.pt").model_config.head == "diff-prod"
    dest, checks = export_checkpoint(
        run / "checkpoint.pt", tmp_path / "exports", formats=["onnx"], n_pairs=4, log=lambda m: None, untrained=True
    )
    assert dest.name == "synthetic-bce-diff-prod-fp32" and all(c.passed for c in checks)
    assert ExportFolder.open(dest).metadata.head == "diff-prod"


def test_a_head_for_contrastive_is_refused_before_any_work(tmp_path):
    args = [*FAST, "--variant", "contrastive", "--head", "diff-prod", "--out", str(tmp_path)]
    result = CliRunner().invoke(train_cli.main, args)
    assert result.exit_code == 1 and "bce head" in result.output and not any(tmp_path.iterdir())


def test_fixed_pair_sampling_trains_on_the_requested_pairs(tmp_path):
    result = CliRunner().invoke(
        train_cli.main, [*FAST, "--variant", "bce", "--epochs", "1", "--sampling", "pairs", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    (line,) = (tmp_path / "synthetic" / "bce-diff-prod" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(line)["pairs"] == 256 and json.loads(line)["images"] == 512


def test_learning_rate_warms_up_then_decays_to_zero():
    cfg = TrainConfig(lr=1e-3, warmup=0.1)
    assert learning_rate(cfg, 0.0) == 0 and learning_rate(cfg, 0.05) == pytest.approx(5e-4)
    assert learning_rate(cfg, 0.1) == pytest.approx(1e-3) and learning_rate(cfg, 0.55) == pytest.approx(5e-4)
    assert learning_rate(cfg, 1.0) == pytest.approx(0, abs=1e-12)
    assert learning_rate(TrainConfig(lr=1e-3, warmup=0.1, schedule="constant"), 0.9) == 1e-3


def test_a_chosen_negatives_mode_holds_for_both_variants_and_the_head_only_for_bce():
    both = TrainConfig(head="diff-prod", negatives="hard")
    assert (both.for_variant("bce").negatives, both.for_variant("bce").head) == ("hard", "diff-prod")
    assert (both.for_variant("contrastive").negatives, both.for_variant("contrastive").head) == ("hard", "concat")
    assert TrainConfig(variant="bce").negatives_used == "all" and TrainConfig().for_variant("bce").negatives == "all"


def test_each_variant_trains_its_own_epochs_unless_chosen(monkeypatch):
    import siamese.training.config
    import siamese.training.run

    assert siamese.training.config.VARIANT_EPOCHS == {"contrastive": 20, "bce": 20}  # the recorded runs' schedules
    # distinct values, so a single shared default could not pass
    monkeypatch.setattr(siamese.training.config, "VARIANT_EPOCHS", {"contrastive": 7, "bce": 11})
    chosen = []
    monkeypatch.setattr(siamese.training.run, "main", lambda cfg, variants: chosen.append(cfg))
    assert CliRunner().invoke(train_cli.main, ["--variant", "both"]).exit_code == 0
    runs = {v: chosen[0].for_variant(v) for v in ("contrastive", "bce")}  # as the CLI's defaults leave it
    assert (runs["contrastive"].epochs_used, runs["bce"].epochs_used) == (7, 11)
    assert TrainConfig(epochs=3).for_variant("bce").epochs_used == 3 and TrainConfig(variant="bce").epochs_used == 11


def test_compile_auto_trains_eagerly_without_a_compiler_and_on_refuses(monkeypatch):
    import siamese.training.loop

    model = SiameseNet("contrastive", 16)
    cpu = torch.device("cpu")
    assert training_embedding(model, TrainConfig(compile="off"), cpu) == model.embed
    monkeypatch.setattr(siamese.training.loop, "cxx_compiler", lambda: None)
    assert training_embedding(model, TrainConfig(compile="auto"), cpu) == model.embed
    with pytest.raises(SiameseError, match="C\\+\\+ compiler"):
        training_embedding(model, TrainConfig(compile="on"), cpu)


@pytest.mark.skipif(cxx_compiler() is None, reason="Inductor on CPU needs a C++ compiler")
def test_compiled_training_matches_eager_and_keeps_plain_checkpoint_keys(tmp_path):
    """The default (compile auto) run: the same losses as eager, and a checkpoint eager code loads."""
    runs = {}
    for mode in ("on", "off"):
        args = [*SMALL, "--amp", "none", "--compile", mode, "--variant", "contrastive", "--epochs", "1"]
        result = CliRunner().invoke(train_cli.main, [*args, "--val-identities", "0", "--out", str(tmp_path / mode)])
        assert result.exit_code == 0, result.output
        runs[mode] = tmp_path / mode / "synthetic" / "contrastive"
    losses = {m: json.loads((r / "metrics.jsonl").read_text())["train_loss"] for m, r in runs.items()}
    assert losses["on"] == pytest.approx(losses["off"], rel=1e-2)
    compiled, eager = (load_checkpoint(runs[m] / "checkpoint.pt").model for m in ("on", "off"))
    assert list(compiled) == list(eager)  # no "_orig_mod." prefixes: export, eval and resume read it as is
    torch.manual_seed(0)  # the runs' seed: their common starting weights
    start = SiameseNet("contrastive", 16)
    start_weights = {k: w.detach().clone() for k, w in start.named_parameters()}
    start.load_state_dict(compiled)

    def update(weights):  # what training changed: the compiled steps must train the checkpoint's own parameters
        return torch.cat([(weights[k] - start_weights[k]).flatten() for k in start_weights])

    # measured 0.08: float rounding differs between Inductor and eager kernels, and training amplifies it
    assert (update(compiled) - update(eager)).norm() < 0.25 * update(eager).norm()


def test_amp_auto_is_bf16_only_where_the_device_computes_it_natively(monkeypatch):
    import siamese.training.loop

    cpu = torch.device("cpu")
    for native, expected in ((True, "bf16"), (False, "none")):
        monkeypatch.setattr(siamese.training.loop, "native_bf16", lambda device, native=native: native)
        assert resolve_amp("auto", cpu) == expected
        assert (resolve_amp("none", cpu), resolve_amp("bf16", cpu)) == ("none", "bf16")  # a choice is kept
    with pytest.raises(ValueError, match="resolve it"):
        StepLoss(SiameseNet("contrastive", 16), None, "hard", "auto")


@pytest.mark.parametrize("amp", ["bf16", "none"])
def test_a_training_step_autocasts_exactly_when_its_precision_is_bf16(amp):
    model = SiameseNet("contrastive", 16)
    seen = []

    def embed(images):
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return model.embed(images)

    StepLoss(model, embed, "hard", amp)(torch.randn(8, 3, 16, 16), torch.arange(4).repeat_interleave(2), True)
    assert seen == [amp == "bf16"]


def test_training_steps_with_fused_adamw_and_it_updates_as_the_for_loop_one(trained):
    out, _ = trained
    checkpoints = sorted((out / "synthetic").glob("*/checkpoint.pt"))
    assert len(checkpoints) == 2  # both variants; what ran is in each checkpoint's optimizer state
    assert all(g["fused"] for c in checkpoints for g in load_checkpoint(c).optimizer["param_groups"])
    torch.manual_seed(0)
    models = {kind: SiameseNet("contrastive", 16) for kind in ("fused", "for-loop")}
    models["for-loop"].load_state_dict(models["fused"].state_dict())
    optimizers = {kind: make_optimizer(m, TrainConfig(lr=1e-2, weight_decay=0.1), kind) for kind, m in models.items()}
    images, identity = torch.randn(8, 3, 16, 16), torch.arange(4).repeat_interleave(2)
    start = {n: p.detach().clone() for n, p in models["fused"].named_parameters()}
    for kind, model in models.items():  # one step: Adam's near-sign updates amplify rounding over several
        loss = StepLoss(model, model.embed, "all", "none")(images, identity, True)
        loss.backward()
        optimizers[kind].step()
    fused, loop = (dict(m.named_parameters()) for m in models.values())
    assert max((fused[n] - p).abs().max().item() for n, p in start.items()) > 1e-3  # the step moved the weights ...
    assert max((fused[n] - loop[n]).abs().max().item() for n in fused) < 1e-6  # ... and both alike


def test_the_default_run_records_the_precision_this_machine_trained_in(tmp_path):
    args = [*SMALL, "--compile", "off", "--variant", "contrastive", "--epochs", "1", "--out", str(tmp_path)]
    result = CliRunner().invoke(train_cli.main, args)  # --amp left at its default, auto
    assert result.exit_code == 0, result.output
    run = tmp_path / "synthetic" / "contrastive"
    expected = "bf16" if native_bf16(torch.device("cpu")) else "none"
    assert load_checkpoint(run / "checkpoint.pt").config["amp"] == expected
    assert json.loads((run / "summary.json").read_text())["config"]["amp"] == expected


def test_progress_off_a_terminal_is_a_line_per_tenth_of_the_epoch(capsys):
    from siamese.training.loop import LogProgress

    progress = LogProgress("bce epoch 1", 50, enabled=True, every_s=3600)
    for done in range(1, 51):
        progress.update(done, 0.5, done * 60)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 9 and lines[0].startswith("bce epoch 1: 10% (5/50 batches), loss 0.5000")
    assert all("images/s" in x and "min left" in x for x in lines)
    quiet = LogProgress("bce epoch 1", 50, enabled=False)
    quiet.update(25, 0.5, 100)
    assert capsys.readouterr().err == ""


def test_export_sets_the_default_that_verify_and_bench_then_name(trained, tmp_path, monkeypatch):
    """The user's path: train, export, verify with no --export: the answer names its model."""
    import shutil

    out, _ = trained
    monkeypatch.chdir(tmp_path)
    shutil.copytree(out, tmp_path / "runs")
    exported = CliRunner().invoke(export_cli.main, ["--format", "onnx", "--verify-pairs", "4"])
    assert exported.exit_code == 0, exported.output
    summaries = {
        s["variant"]: s["accuracy"]
        for s in (json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/*/summary.json"))
    }
    best = max(summaries, key=summaries.get)
    default = (tmp_path / "exports" / "DEFAULT").read_text().strip()
    assert default == f"synthetic-{'bce-diff-prod' if best == 'bce' else 'contrastive'}-fp32"
    assert f"default export (used without --export): exports/{default}" in exported.output
    int8 = CliRunner().invoke(export_cli.main, ["--format", "onnx", "--dtype", "int8", "--verify-pairs", "4"])
    assert int8.exit_code == 0, int8.output
    assert (tmp_path / "exports" / "DEFAULT").read_text().strip() == default  # only fp32 exports set it
    from PIL import Image

    for name in ("a.png", "b.png"):
        Image.linear_gradient("L").convert("RGB").resize((32, 32)).save(tmp_path / name)
    verified = CliRunner().invoke(verify_cli.main, ["a.png", "b.png"])
    assert verified.exit_code == 0, verified.output
    assert verified.output.startswith(f"model: exports/{default} (") and re.search(
        r"trained on synthetic \(\d epochs", verified.output
    )


def test_summary_records_the_commit_the_run_started_from(tmp_path, monkeypatch):
    """A two-hour run outlives commits made beside it: its figures belong to the code that trained."""
    from siamese.training import run as training_run

    head = {"commit": "the-start"}
    train_one_epoch = training_run.train_one_epoch

    def commit_during_training(*args, **kwargs):
        head["commit"] = "a-later-head"
        return train_one_epoch(*args, **kwargs)

    monkeypatch.setattr(training_run, "git_commit", lambda: head["commit"])
    monkeypatch.setattr(training_run, "train_one_epoch", commit_during_training)
    result = CliRunner().invoke(train_cli.main, [*FAST, "--variant", "bce", "--epochs", "1", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "synthetic" / "bce-diff-prod" / "summary.json").read_text())
    assert summary["git_commit"] == "the-start"
