"""siamese-eval: figures on crafted scores, and end to end on a checkpoint and its export."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from siamese.cli import evaluate as evaluate_cli
from siamese.core.metrics import tar_at_far
from siamese.tasks.evaluate import Scored, fold_accuracies, metrics


def test_tar_at_far_takes_the_best_rate_within_the_false_accept_budget():
    fpr = np.array([0.0, 0.001, 0.01, 0.02, 1.0])
    tpr = np.array([0.0, 0.30, 0.60, 0.70, 1.0])
    assert tar_at_far(fpr, tpr, 1e-2) == 0.60 and tar_at_far(fpr, tpr, 1e-3) == 0.30 and tar_at_far(fpr, tpr, 0) == 0


def test_view2_folds_are_tested_at_a_threshold_chosen_on_the_other_folds():
    # distances: fold 0 separates at 1.5, fold 1 at 3.5; each fold's threshold comes from the other
    scores = np.array([1.0, 2.0, 3.0, 4.0])
    same = np.array([True, False, True, False])
    scored = Scored(scores, same, np.array([0, 0, 1, 1]), 2.5, False, "contrastive", "crafted")
    folds = fold_accuracies(scored)
    assert folds["accuracies"] == [0.5, 0.5] and folds["mean"] == 0.5
    result = metrics(scored, "crafted.txt")
    assert result.accuracy == 0.5 and result.best_accuracy == 0.75


@pytest.fixture(scope="module")
def view2_file(tmp_path_factory, lfw_dir):
    """A View 2 file (2 folds x 3 same + 3 different) of real LFW test pairs."""
    lines = (lfw_dir / "pairsDevTest.txt").read_text().splitlines()[1:]
    same, different = lines[:6], lines[500:506]
    body = same[:3] + different[:3] + same[3:] + different[3:]
    path = tmp_path_factory.mktemp("view2") / "pairs.txt"
    path.write_text("2\t3\n" + "\n".join(body) + "\n")
    return path


def test_eval_of_a_checkpoint_and_its_export_agree_and_write_json_and_plots(small_export, view2_file, tmp_path):
    from conftest import LFW

    from siamese.data.lfw import locate_lfw

    ckpt, dest, _ = small_export("contrastive")
    images = locate_lfw(LFW).image_root
    runner = CliRunner()
    results = {}
    for name, source in (("export", dest), ("checkpoint", ckpt)):
        out = tmp_path / name
        args = [str(source), "--pairs", str(view2_file), "--images", str(images), "--out", str(out)]
        done = runner.invoke(evaluate_cli.main, args)
        assert done.exit_code == 0, done.output
        assert "2-fold" in done.output and "TAR@FAR 0.001" in done.output
        results[name] = json.loads((out / "eval.json").read_text())
        assert (out / "roc.png").read_bytes()[:4] == b"\x89PNG" and (out / "scores.png").read_bytes()[:4] == b"\x89PNG"
    export, checkpoint = results["export"], results["checkpoint"]
    assert export["n_pairs"] == 12 and len(export["folds"]["accuracies"]) == 2
    assert set(export["tar_at_far"]) == {"0.01", "0.001"}
    for key in ("accuracy", "best_accuracy", "auc", "eer"):
        assert export[key] == pytest.approx(checkpoint[key], abs=1e-6), key


def test_eval_refuses_what_is_neither_a_checkpoint_nor_an_export(tmp_path, view2_file):
    (tmp_path / "folder").mkdir()
    done = CliRunner().invoke(evaluate_cli.main, [str(tmp_path / "folder"), "--pairs", str(view2_file)])
    assert done.exit_code == 1 and "neither a checkpoint file nor an export folder" in done.output


def test_pairs_of_people_the_model_was_trained_or_tuned_on_are_refused_unless_allowed():
    """View 2's folds hold View 1's training people: a model trained on them must not be scored
    there as if they were unseen. The export and checkpoint records carry who trained it."""
    from siamese.artifacts.records import TrainedOn
    from siamese.core.errors import SiameseError
    from siamese.core.pairs import Pair
    from siamese.tasks.evaluate import refuse_seen_people

    trained = TrainedOn("lfw", epochs=8, people=["Ann", "Bob"])
    unseen, seen = Pair("Cid/Cid_0001.jpg", "Dee/Dee_0001.jpg", 0), Pair("Eve/Eve_0001.jpg", "Bob/Bob_0002.jpg", 0)
    assert refuse_seen_people(trained, [unseen], allow=False) == ""
    with pytest.raises(SiameseError, match="1 of 2 pairs show people this model was trained or tuned on"):
        refuse_seen_people(trained, [unseen, seen], allow=False)
    assert "NOT a test figure" in refuse_seen_people(trained, [unseen, seen], allow=True)
    assert TrainedOn.from_dict(trained.to_dict(), "metadata.json") == trained
    assert refuse_seen_people(TrainedOn("lfw", epochs=8), [seen], allow=False) == ""  # not recorded: nothing to tell


def test_a_run_records_every_training_person_validation_people_included(tmp_path):
    from test_data import make_lfw

    from siamese.data.lfw import load_lfw

    data = make_lfw(tmp_path / "lfw", people=("Ann", "Bob", "Cid", "Dee", "Eve", "Fay"), per_person=3)
    same = ["Ann\t1\t2", "Bob\t1\t2", "Cid\t1\t2", "Dee\t1\t2"]
    train = same + ["Ann\t1\tBob\t1", "Cid\t1\tDee\t1", "Ann\t2\tCid\t2", "Bob\t2\tDee\t2"]
    (data / "pairsDevTrain.txt").write_text("4\n" + "\n".join(train) + "\n")
    (data / "pairsDevTest.txt").write_text("1\nEve\t1\t3\nEve\t2\tFay\t2\n")
    dataset = load_lfw(data, 8, cache_dir=tmp_path / "cache")
    held_out = dataset.split_validation(0.5, 4)
    assert set(held_out.train_identities) < set(held_out.people) == set(dataset.train_identities)
