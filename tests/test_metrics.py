import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from siamese.core.metrics import best_threshold, decide, equal_error_rate, roc_auc, roc_curve, verification_metrics


def test_roc_and_auc_by_hand():
    scores = [0.9, 0.8, 0.7, 0.6, 0.55, 0.4]
    same = [1, 1, 0, 1, 0, 0]
    fpr, tpr, thr = roc_curve(scores, same)
    assert fpr.tolist() == pytest.approx([0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    assert tpr.tolist() == pytest.approx([0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
    assert thr[1:].tolist() == scores
    # 9 (same, different) orderings, 8 ranked correctly
    assert roc_auc(fpr, tpr) == pytest.approx(8 / 9)


def test_distances_are_oriented_lower_is_same():
    d = [0.1, 0.2, 0.3, 0.4]
    same = [1, 1, 0, 0]
    fpr, tpr, _ = roc_curve(d, same, higher_is_same=False)
    assert roc_auc(fpr, tpr) == pytest.approx(1.0)
    t = best_threshold(d, same, higher_is_same=False)
    assert t == pytest.approx(0.25)
    assert decide(d, t, higher_is_same=False).tolist() == [True, True, False, False]


def test_equal_error_rate():
    fpr, tpr, _ = roc_curve([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0])
    # at threshold 0.75: FAR 1/2, FRR 1/2
    assert equal_error_rate(fpr, tpr) == pytest.approx(0.5)
    fpr, tpr, _ = roc_curve([0.9, 0.1], [1, 0])
    assert equal_error_rate(fpr, tpr) == pytest.approx(0.0)


def test_best_threshold_by_hand_and_with_ties():
    scores = [0.1, 0.4, 0.35, 0.8]
    same = [0, 0, 1, 1]
    t = best_threshold(scores, same)
    # best cut: above 0.4 -> 3 of 4 right (0.35 same lost); or above 0.3 -> 3 right too; first max wins
    acc = (decide(scores, t) == np.array(same, bool)).mean()
    assert acc == 0.75
    tied = best_threshold([0.5, 0.5, 0.5, 0.9], [0, 1, 0, 1])
    assert not 0.5 - 1e-9 < tied < 0.5 + 1e-9


@given(st.lists(st.tuples(st.floats(-5, 5, allow_nan=False), st.booleans()), min_size=2, max_size=60))
def test_best_threshold_is_optimal(items):
    scores = np.array([s for s, _ in items])
    same = np.array([y for _, y in items])
    t = best_threshold(scores, same)
    acc = (decide(scores, t) == same).mean()
    # exhaustive: every cut between sorted distinct scores, and both extremes
    cuts = np.r_[scores.min() - 1, np.unique(scores)]
    best = max((decide(scores, c) == same).mean() for c in cuts)
    assert acc == pytest.approx(best)


def test_verification_metrics_bundle():
    m = verification_metrics([0.9, 0.2, 0.8, 0.1], [1, 0, 1, 0], threshold=0.5)
    assert (m.accuracy, m.auc, m.eer, m.n_pairs) == (1.0, 1.0, 0.0, 4)
    with pytest.raises(ValueError, match="both"):
        roc_curve([0.1, 0.2], [1, 1])
