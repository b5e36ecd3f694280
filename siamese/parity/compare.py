"""Parity: does a runtime give the same answers as the reference? Kept apart from every runtime.

It sees only named numpy arrays. Three rules, all of which must hold:

1. every element of every float output within `atol * scale + rtol * |ref|`, where scale is
   the reference output's largest magnitude (Polygraphy's per-element rule, with the absolute
   part scaled so one tolerance serves features, distances and probabilities alike); the
   max-relative figure `max|a - r| / scale` is reported beside it; NaN or Inf always fails.
   A score's scale has a floor: a distance is a difference of two feature vectors, so its scale
   is at least theirs (where the features nearly coincide, in an untrained or collapsed
   network, a distance near 0 carries the features' rounding, which is no error of the
   runtime); a probability's range is [0, 1], so its scale is at least 1 (where every pair's
   probability lies near 0, a rounding of the logit still moves each by that same fraction of
   itself, and a bound shrunk to the batch's largest probability would call it an error);
2. every *decisive* pair gets the reference's decision. A pair is borderline, and may flip,
   only when its reference score lies within `(atol + rtol) * |score|` of the threshold: the
   band is computed per pair from its own score, so no other pair widens it;
3. accuracy on the labelled pairs does not change by more than the precision's `accuracy_delta`
   (0 at fp32) *and significantly*: the pairs whose decision differs from the reference's
   (right where it was wrong, or wrong where it was right) are judged with the exact McNemar
   test, so a few flips on a small sample, which chance alone makes, never fail a runtime, and
   a real loss on a large one always does. The verdict says what the sample could resolve.

Tolerances are per precision, measured (README, "Parity"): a runtime is held to the coarser
of its own precision and the export's dtype.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np

PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8")  # finest to coarsest
SIGNIFICANCE = 0.05  # a change of accuracy fails only where chance would make it this rarely
PROBABILITY_SCALE = 1.0  # the smallest scale a probability score is judged against (rule 1)


@dataclass(frozen=True)
class Tolerance:
    atol: float  # times the reference output's largest magnitude
    rtol: float  # times each reference element's own magnitude
    accuracy_delta: float  # largest allowed change of accuracy on labelled pairs (a fraction)
    # the score compared element by element (False: through its decisions and accuracy only)
    score_elements: bool = True
    # judged on the labelled real pairs only: a quantization calibrated on faces meets noise
    # images outside its calibrated ranges by design, so random pairs say nothing about it
    real_pairs_only: bool = False

    @property
    def band(self) -> float:
        """Relative half-width of the borderline band around the threshold."""
        return self.atol + self.rtol


# Measured on the trained 128x128 network against eager fp32 (`python -m bench.studies.tolerances`,
# README "Parity"), with a margin of 3-4x: the largest error is 5.0e-3 of an output's scale in
# bf16 autocast, 9.4e-4 in fp16 autocast and 2.5e-4 in emulated TF32; fp32 runtimes differ
# only by summation order (5e-6 measured, ONNX Runtime against eager).
TOLERANCES = {
    "fp32": Tolerance(atol=5e-5, rtol=5e-5, accuracy_delta=0.0),
    "tf32": Tolerance(atol=1e-3, rtol=1e-3, accuracy_delta=0.005),
    "fp16": Tolerance(atol=3e-3, rtol=3e-3, accuracy_delta=0.005),
    "bf16": Tolerance(atol=2e-2, rtol=2e-2, accuracy_delta=0.005),
    # INT8 (static, calibrated) is coarser than every float format: most features are within
    # 0.3% of their scale, but a few images with activations beyond the calibrated ranges are
    # off by up to 20% of the scale (README, "CPU performance"); measured on the 1,000 LFW test pairs.
    # Such a feature error moves a bce probability near 0.5, where the sigmoid is steepest, by more
    # (0.22 measured on a trained bce export, 2026-12-02): the score is judged by its decisions
    "int8": Tolerance(atol=0.2, rtol=0.2, accuracy_delta=0.01, score_elements=False, real_pairs_only=True),
}


def coarser(*precisions: str) -> str:
    return max(precisions, key=PRECISIONS.index)


def tolerance_for(*precisions: str, overrides: dict[str, float] | None = None) -> Tolerance:
    """The tolerance of the coarsest precision; `overrides` may replace atol/rtol/accuracy_delta."""
    return replace(TOLERANCES[coarser(*precisions)], **(overrides or {}))


@dataclass
class OutputComparison:
    name: str
    passed: bool
    finite: bool
    max_abs: float = 0.0
    mean_abs: float = 0.0
    max_rel: float = 0.0  # max|a - r| / max|r|
    worst: float = 0.0  # max over elements of |a - r| / (atol * scale + rtol * |r|): passes at <= 1
    outside: int = 0  # elements beyond the per-element bound
    min_cosine: float | None = None  # per-row cosine similarity, for 2-D outputs (embeddings)
    gating: bool = True  # False: reported, and judged only by being finite (Tolerance.score_elements)

    def describe(self) -> str:
        status = ("" if self.finite else " NON-FINITE") + (
            "" if self.gating else " (not gating: judged by its decisions)"
        )
        return (
            f"{self.name}: max abs {self.max_abs:.3g}, rel {self.max_rel:.3g}, "
            f"{self.outside} elements out of tolerance (worst {self.worst:.2f}x){status}"
        )


@dataclass
class DecisionComparison:
    pairs: int
    borderline: int  # pairs inside the band, which may flip
    band: float  # the band's half-width at the threshold, in score units
    decisive_agreement: float  # must be 1.0
    agreement: float  # over every pair, borderline ones included
    accuracy: float | None = None  # on the labelled pairs
    accuracy_delta: float | None = None
    passed: bool = False
    now_right: int = 0  # labelled pairs the runtime decides rightly and the reference wrongly
    now_wrong: int = 0  # and the other way round
    p_value: float | None = None  # exact two-sided McNemar test of those discordant pairs
    resolvable: float | None = None  # the smallest accuracy change these labelled pairs can show as significant

    def describe(self) -> str:
        delta = ""
        if self.accuracy_delta is not None:
            delta = (
                f", accuracy {self.accuracy_delta:+.2%} ({self.now_wrong} pairs now wrong, {self.now_right} now right: "
                f"McNemar p={self.p_value:.2g}; this sample shows changes from {self.resolvable:.1%})"
            )
        return (
            f"decisions: {self.decisive_agreement:.2%} of {self.pairs - self.borderline} decisive pairs agree "
            f"({self.borderline} in the +-{self.band:.3g} band){delta}"
        )


@dataclass
class ParityResult:
    precision: str  # whose tolerance was applied
    tolerance: Tolerance
    outputs: list[OutputComparison] = field(default_factory=list)
    decisions: DecisionComparison | None = None

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs) and (self.decisions is None or self.decisions.passed)

    @property
    def max_rel(self) -> float:
        return max((o.max_rel for o in self.outputs), default=0.0)

    def failures(self) -> list[str]:
        bad = [o.describe() for o in self.outputs if not o.passed]
        if self.decisions is not None and not self.decisions.passed:
            bad.append(self.decisions.describe())
        return bad

    def describe(self) -> str:
        parts = [o.describe() for o in self.outputs]
        if self.decisions is not None:
            parts.append(self.decisions.describe())
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}

    @classmethod
    def from_dict(cls, d: dict) -> ParityResult:
        decisions = d.get("decisions")
        return cls(
            precision=d["precision"],
            tolerance=Tolerance(**d["tolerance"]),
            outputs=[OutputComparison(**o) for o in d.get("outputs", [])],
            decisions=DecisionComparison(**decisions) if decisions else None,
        )


def compare_output(
    name: str, actual: np.ndarray, reference: np.ndarray, tol: Tolerance, min_scale: float = 0.0
) -> OutputComparison:
    """`min_scale`: the smallest scale the absolute part of the bound is taken against."""
    actual, reference = np.asarray(actual), np.asarray(reference)
    if actual.shape != reference.shape:
        raise ValueError(f"{name}: shape {actual.shape} differs from the reference's {reference.shape}")
    a, r = actual.astype(np.float64), reference.astype(np.float64)
    finite = bool(np.isfinite(a).all())
    if not finite:
        return OutputComparison(name, False, False, float("inf"), float("inf"), float("inf"), float("inf"), a.size)
    diff = np.abs(a - r)
    scale = max(float(np.abs(r).max(initial=0.0)), min_scale, 1e-12)
    bound = tol.atol * scale + tol.rtol * np.abs(r)
    ratio = diff / np.maximum(bound, 1e-30)
    result = OutputComparison(
        name,
        passed=bool((diff <= bound).all()),
        finite=True,
        max_abs=float(diff.max(initial=0.0)),
        mean_abs=float(diff.mean()) if diff.size else 0.0,
        max_rel=float(diff.max(initial=0.0)) / scale,
        worst=float(ratio.max(initial=0.0)),
        outside=int((diff > bound).sum()),
    )
    if a.ndim == 2:
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(r, axis=1)
        result.min_cosine = float(((a * r).sum(axis=1) / np.maximum(norms, 1e-30)).min(initial=1.0))
    return result


def mcnemar_p(now_wrong: int, now_right: int) -> float:
    """Exact two-sided McNemar test: how often a fair coin deciding each discordant pair would
    split them at least this unevenly."""
    n, k = now_wrong + now_right, max(now_wrong, now_right)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n)


def resolvable_change(labelled: int) -> float:
    """The smallest accuracy change `labelled` pairs can show as significant: that many pairs
    all flipped one way (fewer are indistinguishable from chance whatever they are)."""
    k = next(k for k in range(1, 64) if mcnemar_p(k, 0) < SIGNIFICANCE)
    return k / labelled if labelled else 1.0


def compare_decisions(
    actual_same: np.ndarray,
    reference_score: np.ndarray,
    reference_same: np.ndarray,
    threshold: float,
    tol: Tolerance,
    labels: np.ndarray | None = None,
) -> DecisionComparison:
    """Decisive pairs must all agree; accuracy on labelled pairs (label >= 0) may not move by more
    than accuracy_delta significantly (McNemar)."""
    actual_same, reference_same = np.asarray(actual_same, bool), np.asarray(reference_same, bool)
    score = np.asarray(reference_score, np.float64)
    borderline = np.abs(score - threshold) <= tol.band * np.abs(score)
    decisive = ~borderline
    agree = actual_same == reference_same
    result = DecisionComparison(
        pairs=int(len(score)),
        borderline=int(borderline.sum()),
        band=tol.band * abs(threshold),
        decisive_agreement=float(agree[decisive].mean()) if decisive.any() else 1.0,
        agreement=float(agree.mean()) if len(agree) else 1.0,
    )
    passed = bool(agree[decisive].all())
    if labels is not None and (labelled := np.asarray(labels) >= 0).any():
        truth = np.asarray(labels)[labelled] == 1
        right, was_right = actual_same[labelled] == truth, reference_same[labelled] == truth
        result.accuracy = float(right.mean())
        result.accuracy_delta = result.accuracy - float(was_right.mean())
        result.now_right, result.now_wrong = int((right & ~was_right).sum()), int((~right & was_right).sum())
        result.p_value = mcnemar_p(result.now_wrong, result.now_right)
        result.resolvable = resolvable_change(int(labelled.sum()))
        too_large = abs(result.accuracy_delta) > tol.accuracy_delta + 1e-9
        passed = passed and not (too_large and result.p_value < SIGNIFICANCE)
    result.passed = passed
    return result


def compare_runs(
    actual: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    threshold: float,
    tol: Tolerance,
    precision: str,
    labels: np.ndarray | None = None,
    *,
    score_is_distance: bool,
) -> ParityResult:
    """Every float output of `reference` element by element, then the `same` decisions if present."""
    result = ParityResult(precision, tol)
    features = reference.get("features", 0.0)
    score_scale = float(np.abs(features).max(initial=0.0)) if score_is_distance else PROBABILITY_SCALE
    for name, ref in reference.items():
        if name != "same":
            comparison = compare_output(name, actual[name], ref, tol, score_scale if name == "score" else 0.0)
            if name == "score" and not tol.score_elements and "same" in reference:
                comparison.gating, comparison.passed = False, comparison.finite
            result.outputs.append(comparison)
    if "same" in reference:
        result.decisions = compare_decisions(
            actual["same"], reference["score"], reference["same"], threshold, tol, labels
        )
    return result
