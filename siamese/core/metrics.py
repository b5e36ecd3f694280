"""Verification metrics: ROC, AUC, EER and the accuracy-maximising threshold.

Scores follow `higher_is_same`: a BCE probability rises for the same person, a contrastive
distance falls. Internally everything is turned into "higher means same".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def _oriented(scores: np.ndarray, higher_is_same: bool) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    return scores if higher_is_same else -scores


def roc_curve(scores, same, higher_is_same: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct threshold, with (0, 0) prepended.

    Thresholds are in the caller's orientation; ties are handled as one step.
    """
    s = _oriented(scores, higher_is_same)
    y = np.asarray(same, dtype=bool)
    if y.all() or not y.any():
        raise ValueError("ROC needs both same-person and different-person pairs")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(y)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    tpr = np.r_[0.0, tps / y.sum()]
    fpr = np.r_[0.0, fps / (~y).sum()]
    thresholds = np.r_[np.inf, s[last_of_tie]]
    return fpr, tpr, thresholds if higher_is_same else -thresholds


def roc_auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    # the trapezoid rule by hand: np.trapezoid is numpy 2's, and serving (pytriton) pins numpy < 2
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def equal_error_rate(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """The rate where false accepts equal false rejects, interpolated between ROC points."""
    fnr = 1 - tpr
    diff = fpr - fnr  # rises from -1 to 1 along the curve
    i = int(np.searchsorted(diff, 0.0))
    if i == 0:
        return float(fpr[0])
    d0, d1 = diff[i - 1], diff[i]
    t = 0.0 if d1 == d0 else -d0 / (d1 - d0)
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def best_threshold(scores, same, higher_is_same: bool = True) -> float:
    """The threshold with the highest accuracy, halfway between the two scores it separates."""
    s = _oriented(scores, higher_is_same)
    y = np.asarray(same, dtype=bool)
    order = np.argsort(s, kind="mergesort")
    s, y = s[order], y[order]
    # predicting "same" for s > cut: correct = different at or below cut + same above it
    candidates = np.r_[s[0] - 1.0, (s[:-1] + s[1:]) / 2, s[-1] + 1.0]
    below_different = np.r_[0, np.cumsum(~y)]  # different pairs among the k lowest scores
    above_same = y.sum() - np.r_[0, np.cumsum(y)]
    # ties: a cut halfway between equal scores separates nothing, skip it
    valid = np.r_[True, s[:-1] != s[1:], True]
    correct = np.where(valid, below_different + above_same, -1)
    cut = float(candidates[int(np.argmax(correct))])
    return cut if higher_is_same else -cut


def decide(scores, threshold: float, higher_is_same: bool = True) -> np.ndarray:
    scores = np.asarray(scores)
    return scores > threshold if higher_is_same else scores < threshold


FARS = (1e-2, 1e-3)  # the false-accept rates every report gives the true-accept rate at


def tar_at_far(fpr: np.ndarray, tpr: np.ndarray, far: float) -> float:
    """The highest true-accept rate whose false-accept rate does not exceed `far`."""
    return float(tpr[fpr <= far].max(initial=0.0))


@dataclass
class Verification:
    """How well scores separate same from different pairs: the one metrics record of every
    report (training's validation and test figures, siamese-eval's eval.json)."""

    accuracy: float  # at `threshold`
    auc: float
    eer: float
    threshold: float
    n_pairs: int
    best_accuracy: float  # at the best threshold for these very pairs: how well `threshold` transfers
    best_threshold: float
    tar_at_far: dict[str, float]

    def to_dict(self) -> dict:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}


def accuracy_at(scores, same, threshold: float, higher_is_same: bool = True) -> float:
    return float((decide(scores, threshold, higher_is_same) == np.asarray(same, dtype=bool)).mean())


def verification_metrics(scores, same, threshold: float, higher_is_same: bool = True) -> Verification:
    fpr, tpr, _ = roc_curve(scores, same, higher_is_same)
    best = best_threshold(scores, same, higher_is_same)
    return Verification(
        accuracy=accuracy_at(scores, same, threshold, higher_is_same),
        auc=roc_auc(fpr, tpr),
        eer=equal_error_rate(fpr, tpr),
        threshold=threshold,
        n_pairs=len(scores),
        best_accuracy=accuracy_at(scores, same, best, higher_is_same),
        best_threshold=best,
        tar_at_far={f"{far:g}": tar_at_far(fpr, tpr, far) for far in FARS},
    )
