"""The comparator: wrong runtimes fail at every precision, right ones pass, whatever else is in the set."""

import numpy as np
import pytest

from siamese.parity.compare import TOLERANCES, coarser, compare_decisions, compare_output, compare_runs, tolerance_for

RNG = np.random.default_rng(0)


def reference_run(variant: str, n: int = 64):
    """Features and scores shaped like the trained network's: distances 10-40 around a threshold
    of 23.5 (contrastive) or probabilities around 0.5 (bce); labels follow the reference's answer
    on 90% of the pairs."""
    features = RNG.normal(0, 1, (2 * n, 1024)).astype(np.float32)
    if variant == "contrastive":
        threshold, score = 23.5, RNG.uniform(10, 40, n).astype(np.float32)
        same = score < threshold
    else:
        threshold, score = 0.5, RNG.uniform(0.02, 0.98, n).astype(np.float32)
        same = score > threshold
    labels = np.where(RNG.random(n) < 0.9, same, ~same).astype(np.int8)
    return {"features": features, "score": score, "same": same}, threshold, labels


def decide(score, threshold, variant):
    return score < threshold if variant == "contrastive" else score > threshold


def realistic_error(run, precision, variant, threshold):
    """What a correct runtime of that precision does: noise within a quarter of its tolerance
    (bf16 autocast measures 0.9% of the output scale against a 4% tolerance)."""
    tol = TOLERANCES[precision]
    out = {}
    for k in ("features", "score"):
        r = run[k]
        noise = RNG.uniform(-1, 1, r.shape) * (tol.atol * np.abs(r).max() + tol.rtol * np.abs(r)) / 4
        out[k] = (r + noise).astype(np.float32)
    out["same"] = decide(out["score"], threshold, variant)
    return out


@pytest.mark.parametrize("variant", ["contrastive", "bce"])
@pytest.mark.parametrize("precision", ["fp32", "tf32", "fp16", "bf16"])
def test_a_correct_runtime_passes(variant, precision):
    run, threshold, labels = reference_run(variant)
    actual = realistic_error(run, precision, variant, threshold)
    result = compare_runs(actual, run, threshold, TOLERANCES[precision], precision, labels)
    assert result.passed, result.failures()
    assert result.decisions.decisive_agreement == 1.0


WRONG = {
    # the issue's own examples: these scales passed the old tolerances while flipping decisions
    "scaled": {"fp16": 1.0099, "bf16": 1.049, "tf32": 1.0099, "fp32": 1.0002},
}


@pytest.mark.parametrize("variant", ["contrastive", "bce"])
@pytest.mark.parametrize("precision", ["fp32", "tf32", "fp16", "bf16"])
def test_scaled_outputs_fail(variant, precision):
    run, threshold, labels = reference_run(variant)
    factor = WRONG["scaled"][precision]
    actual = {"features": run["features"] * factor, "score": run["score"] * factor}
    actual["same"] = decide(actual["score"], threshold, variant)
    result = compare_runs(actual, run, threshold, TOLERANCES[precision], precision, labels)
    assert not result.passed
    failed = {o.name for o in result.outputs if not o.passed}
    assert {"features", "score"} <= failed


@pytest.mark.parametrize("variant", ["contrastive", "bce"])
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_a_shifted_threshold_fails_on_decisive_pairs(variant, precision):
    run, threshold, labels = reference_run(variant)
    shifted = threshold * (1.1 if variant == "contrastive" else 1.2)  # outside the band, scores untouched
    actual = {**run, "same": decide(run["score"], shifted, variant)}
    result = compare_runs(actual, run, threshold, TOLERANCES[precision], precision, labels)
    assert all(o.passed for o in result.outputs)
    assert not result.passed and result.decisions.decisive_agreement < 1.0


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_a_swapped_pair_order_fails(precision):
    run, threshold, labels = reference_run("contrastive")
    order = np.roll(np.arange(len(run["score"])), 1)
    n = len(run["score"])
    actual = {
        "features": np.concatenate([run["features"][:n][order], run["features"][n:][order]]),
        "score": run["score"][order],
        "same": run["same"][order],
    }
    result = compare_runs(actual, run, threshold, TOLERANCES[precision], precision, labels)
    assert not result.passed and not any(o.passed for o in result.outputs)


def test_the_band_is_per_pair_and_noise_pairs_do_not_widen_it():
    tol = TOLERANCES["fp16"]
    threshold = 23.5
    score = np.array([23.5 * 1.02, 23.5 * 1.002, 1e6])  # decisive, borderline, a huge random-noise score
    reference = score < threshold
    flipped = ~reference
    flipped[2] = reference[2]
    result = compare_decisions(flipped, score, reference, threshold, tol)
    assert result.borderline == 1 and not result.passed  # the first pair is decisive, whatever the third's scale
    assert result.band == pytest.approx(tol.band * threshold)
    only_borderline = reference.copy()
    only_borderline[1] = ~only_borderline[1]
    assert compare_decisions(only_borderline, score, reference, threshold, tol).passed


def test_accuracy_change_is_gated_per_precision():
    score = np.linspace(10, 40, 400)
    threshold = 23.5
    reference = score < threshold
    labels = reference.astype(np.int8)
    actual = reference.copy()
    borderline = np.argmin(np.abs(score - threshold))  # inside the band: a legitimate flip
    actual[borderline] = ~actual[borderline]
    fp16 = compare_decisions(actual, score, reference, threshold, TOLERANCES["fp16"], labels)
    assert fp16.decisive_agreement == 1.0 and fp16.accuracy_delta == pytest.approx(-0.0025)
    assert fp16.passed  # 0.5 point is allowed at fp16
    fp32 = compare_decisions(actual, score, reference, threshold, TOLERANCES["fp32"], labels)
    assert not fp32.passed  # and nothing at fp32
    two = actual.copy()
    two[borderline + 1] = ~two[borderline + 1]  # a second borderline flip: 0.5 point, still allowed
    three = two.copy()
    three[borderline - 1] = ~three[borderline - 1]  # a third: 0.75 point, too much
    assert compare_decisions(two, score, reference, threshold, TOLERANCES["fp16"], labels).passed
    assert not compare_decisions(three, score, reference, threshold, TOLERANCES["fp16"], labels).passed


def test_non_finite_outputs_always_fail():
    r = np.ones((4, 8), np.float32)
    a = r.copy()
    a[0, 0] = np.nan
    result = compare_output("features", a, r, TOLERANCES["bf16"])
    assert not result.passed and not result.finite


def test_polygraphy_rule_is_reported_beside_max_relative():
    r = np.array([100.0, 1.0], np.float32)
    tol = tolerance_for("fp32", overrides={"atol": 0.0, "rtol": 1e-3})
    result = compare_output("score", r * np.array([1.0, 1.01], np.float32), r, tol)
    # 1% off on the small element: tiny relative to the scale (1e-4), outside its own rtol
    assert result.max_rel == pytest.approx(1e-4, rel=1e-3) and not result.passed and result.outside == 1


def test_the_coarser_precision_wins():
    assert coarser("fp32", "fp16") == "fp16" and coarser("bf16", "fp32") == "bf16" and coarser("tf32", "fp32") == "tf32"
    assert tolerance_for("fp32", "fp16") == TOLERANCES["fp16"]
