"""Every study of bench/studies runs end to end at a tiny size, so none rots before it is needed
again. (The INT8 study runs in test_export's INT8 test, beside the exports it reads.)"""

import numpy as np
import pytest
from click.testing import CliRunner
from refusals import GOOD_PAIRS, pair_list

from bench.studies import (
    detectors,
    face_choice,
    framing_gap,
    ort_session,
    pair_workload,
    paired,
    pasted,
    shared_weights,
    tolerances,
    train_step,
)


def run(command, args) -> str:
    result = CliRunner().invoke(command.main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_ort_session_times_every_setting(contrastive_export):
    out = run(ort_session, ["--export", contrastive_export, "--threads", "1", "--seconds", "0.1"])
    assert "1 intra-op thread" in out and "graph level disable" in out


def test_shared_weights_times_both_graphs(contrastive_export):
    out = run(shared_weights, ["--export", contrastive_export, "--batch", "2", "--repeats", "1"])
    assert "pairs/s" in out


def test_pair_workload_agrees_with_the_naive_path(contrastive_export, image_folder):
    pairs = pair_list(image_folder, GOOD_PAIRS)
    out = run(pair_workload, ["--export", contrastive_export, "--pairs", pairs, "--batch", "2", "--no-detect"])  # noise
    assert "decisions agree on 100.00% of pairs" in out


def test_train_step_times_a_mode_and_splits_its_profile_into_phases():
    out = run(
        train_step,
        ["--image-size", "16", "--identities", "2", "--images-per-identity", "2", "--steps", "2", "--modes", "fp32"]
        + ["--adamw", "for-loop", "--profile"],
    )
    assert "fp32" in out and "images/s" in out and "for-loop AdamW" in out
    phases = dict(p.rsplit(" ", 1) for p in out.split("phases of the step: ")[1].splitlines()[0].split(", "))
    assert list(phases) == ["forward", "loss", "backward", "optimizer"]
    assert 0.8 <= sum(float(v.rstrip("%")) for v in phases.values()) / 100 <= 1.01  # the step is its phases
    shares = [
        float(line.split("%")[0]) for line in out.split("calls per step):")[1].splitlines()[1:] if "aten::" in line
    ]
    assert len(shares) >= 5 and shares == sorted(shares, reverse=True), out


def test_tolerances_measures_each_precision(contrastive_export, lfw_dir):
    out = run(tolerances, ["--export", contrastive_export, "--pairs", "2"])
    assert {line.split(":")[0] for line in out.splitlines()} == {"bf16", "fp16", "tf32"}


def test_detectors_measures_every_detector_and_the_framing(lfw_dir, tmp_path):
    pytest.importorskip("skimage", reason="the face-free photos are scikit-image's (the dev extra)")
    out = run(detectors, ["--lfw", lfw_dir, "--limit", "10", "--json", tmp_path / "d.json"])
    assert '"with_a_face": 10' in out and "framing_on_training_identities" in out


def test_face_choice_counts_each_rules_wrong_faces_on_frames_and_scenes(lfw_dir, tmp_path):
    import json

    pytest.importorskip("skimage", reason="the natural backgrounds are scikit-image's photos (the dev extra)")
    run(face_choice, ["--lfw", lfw_dir, "--images", "6", "--json", tmp_path / "c.json"])
    report = json.loads((tmp_path / "c.json").read_text())
    from siamese.detect import Face
    from siamese.detect.framing import Framing

    # a frame pasted at (100, 50) at twice its size: LFW's face there, and a false face beside it
    own = Face(100 + 2 * 72, 50 + 2 * 74, 2 * 106, 2 * 106, 0.93)
    assert face_choice.is_own_face(face_choice.in_frame(own, 100, 50, 500), Framing())
    assert not face_choice.is_own_face(face_choice.in_frame(Face(600, 50, 212, 212, 0.9), 100, 50, 500), Framing())
    for where in ("LFW frames", "pasted into scenes"):
        scored = report[where]["images"] - report[where]["own_face_not_found"]
        assert report[where]["images"] == 6 and scored >= 5  # YuNet finds every LFW face
        assert set(report[where]["wrong_face"]) == set(face_choice.RULES)
        assert all(0 <= wrong <= scored for wrong in report[where]["wrong_face"].values())


def test_paired_scores_two_runs_on_the_same_pairs_with_mcnemar(lfw_dir, tmp_path):
    import json

    from siamese.artifacts.checkpoint import untrained_checkpoint
    from siamese.data.lfw import locate_lfw

    assert paired.compare(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 1], bool)) == {
        "a": {"accuracy": 0.5, "ci95": list(paired.wilson_interval(0.5, 4))},
        "b": {"accuracy": 0.75, "ci95": list(paired.wilson_interval(0.75, 4))},
        "pairs": 4, "only_a_right": 1, "only_b_right": 2, "p_value": paired.mcnemar_p(1, 2),
    }  # fmt: skip
    test_pairs = locate_lfw(lfw_dir).test_pairs.read_text().splitlines()
    pairs = pair_list(tmp_path, "\n".join(["3", *test_pairs[1:4], *test_pairs[-3:]]) + "\n")  # LFW's format
    runs = [untrained_checkpoint(tmp_path / f"{seed}.pt", "bce", 16, seed=seed) for seed in (0, 1)]
    run(paired, ["--a", runs[0], "--b", runs[1], "--pairs", pairs, "--lfw", lfw_dir, "--json", tmp_path / "p.json"])
    report = json.loads((tmp_path / "p.json").read_text())
    from siamese.core.metrics import decide
    from siamese.core.pairs import read_pairs
    from siamese.tasks.evaluate import score_checkpoint

    for name, checkpoint in zip("ab", runs, strict=True):  # each at its own threshold, as siamese-eval decides
        scored = score_checkpoint(checkpoint, read_pairs(pairs), locate_lfw(lfw_dir).image_root)
        right = decide(scored.scores, scored.threshold, scored.higher_is_same) == scored.same
        assert report[name]["accuracy"] == right.mean() and report["pairs"] == 6


def test_pasted_verifies_originals_pasted_and_whole(contrastive_export, lfw_dir, tmp_path):
    pytest.importorskip("skimage", reason="the natural backgrounds are scikit-image's photos (the dev extra)")
    out = run(
        pasted, ["--export", contrastive_export, "--lfw", lfw_dir, "--limit", "4", "--figure", tmp_path / "f.png"]
    )
    assert "pasted, whole frame (--no-detect)" in out and "'decided': 4" in out
    assert "pasted, cut out where it was pasted" in out and "framed vs cut out where pasted" in out
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_framing_gap_takes_the_pasted_test_apart_on_the_runs_validation_pairs(contrastive_export, lfw_dir, tmp_path):
    pytest.importorskip("skimage", reason="the natural backgrounds are scikit-image's photos (the dev extra)")
    from siamese.artifacts.checkpoint import load_checkpoint, save_checkpoint, untrained_checkpoint

    ckpt = load_checkpoint(untrained_checkpoint(tmp_path / "c.pt", "contrastive", 16))
    ckpt.config = {"variant": "contrastive", "data": str(lfw_dir), "image_size": 16, "limit_pairs": 60, "val_pairs": 6}
    save_checkpoint(tmp_path / "c.pt", ckpt)
    out = run(framing_gap, ["--checkpoint", tmp_path / "c.pt", "--export", contrastive_export, "--limit", "4"])
    rows = [line.split(":")[0] for line in out.splitlines() if "'decided': 4" in line]
    assert rows == ["original", "cut out where pasted", "detected and framed (siamese-verify)",
                    "one look of the detector", "true box in the scene", "original, cropped by the rule"]  # fmt: skip


def test_seeds_trains_one_run_per_seed_reports_the_spread_and_continues_where_it_stopped(tmp_path):
    import json
    import statistics

    from bench.studies import seeds

    args = ["--variant", "contrastive", "--seeds", "0,1", "--out", tmp_path / "runs", "--json", tmp_path / "s.json"]
    tiny = ["--", "--synthetic", "--image-size", "16", "--sampling", "pairs", "--pairs-per-epoch", "64"]
    tiny += ["--batch-size", "16", "--val-pairs", "64", "--epochs", "1", "--amp", "none", "--compile", "off"]
    run(seeds, args + tiny)
    report = json.loads((tmp_path / "s.json").read_text())
    runs = [json.loads(next((tmp_path / "runs" / f"seed-{s}").glob("*/*/summary.json")).read_text()) for s in (0, 1)]
    assert [r["config"]["seed"] for r in runs] == [0, 1]
    assert [report["runs"][str(s)]["accuracy"] for s in (0, 1)] == [r["accuracy"] for r in runs]
    assert report["accuracy"]["sd"] == statistics.stdev(r["accuracy"] for r in runs)
    assert report["accuracy"]["mean"] == statistics.fmean(r["accuracy"] for r in runs)
    assert report["commands"][0].startswith("siamese-train --variant contrastive --synthetic")
    again = run(seeds, args + tiny)  # finished seeds are read, not trained again
    assert again.count("read the finished run") == 2
    result = CliRunner().invoke(seeds.main, [str(a) for a in args + [*tiny, "--seed=3"]])
    assert result.exit_code != 0 and "--seed is the study's to set" in result.output


def test_seeds_resumes_a_seed_stopped_before_its_summary(tmp_path, monkeypatch):
    from bench.studies import seeds

    commands = []
    monkeypatch.setattr(seeds.subprocess, "run", lambda command, check: commands.append(command))
    stopped = tmp_path / "seed-4" / "lfw" / "contrastive"
    stopped.mkdir(parents=True)
    (stopped / "checkpoint.pt").write_bytes(b"")  # an epoch saved, no summary yet
    for seed in (3, 4):
        seeds.train("contrastive", seed, tmp_path / f"seed-{seed}", ("--epochs", "2"))
    assert "--resume" not in commands[0] and commands[1][-3:] == ["--out", str(tmp_path / "seed-4"), "--resume"]
