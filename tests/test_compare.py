"""The comparator: wrong runtimes fail at every precision, right ones pass, whatever else is in the set."""

import numpy as np
import pytest

from siamese.parity.compare import TOLERANCES, coarser, compare_decisions, compare_output, compare_runs, tolerance_for

RNG = np.random.default_rng(0)
DISTANCE = {"contrastive": True, "bce": False}


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


def compare(actual, run, threshold, precision, labels, variant):
    return compare_runs(
        actual, run, threshold, TOLERANCES[precision], precision, labels, score_is_distance=DISTANCE[variant]
    )


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
    result = compare(actual, run, threshold, precision, labels, variant)
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
    result = compare(actual, run, threshold, precision, labels, variant)
    assert not result.passed
    failed = {o.name for o in result.outputs if not o.passed}
    assert {"features", "score"} <= failed


@pytest.mark.parametrize("variant", ["contrastive", "bce"])
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_a_shifted_threshold_fails_on_decisive_pairs(variant, precision):
    run, threshold, labels = reference_run(variant)
    shifted = threshold * (1.1 if variant == "contrastive" else 1.2)  # outside the band, scores untouched
    actual = {**run, "same": decide(run["score"], shifted, variant)}
    result = compare(actual, run, threshold, precision, labels, variant)
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
    result = compare(actual, run, threshold, precision, labels, "contrastive")
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


def _flipped(n: int, worse: int, better: int, threshold: float = 0.5):
    """n labelled pairs the reference decides rightly except `better` of them; the runtime
    flips `worse` right decisions to wrong and the `better` wrong ones to right (all inside the
    band, so only the accuracy gate can judge them)."""
    score = np.full(n, threshold)  # every pair borderline
    truth = np.arange(n) % 2 == 0
    reference = truth.copy()
    reference[:better] = ~reference[:better]
    actual = reference.copy()
    actual[:better] = truth[:better]
    actual[better : better + worse] = ~truth[better : better + worse]
    return actual, score, reference, threshold, truth.astype(np.int8)


def _gate(n: int, worse: int, better: int, tol):
    actual, score, reference, threshold, labels = _flipped(n, worse, better)
    return compare_decisions(actual, score, reference, threshold, tol, labels)


def test_a_few_flips_that_chance_explains_never_fail_and_the_verdict_says_so():
    """The INT8 case: 2 of 64 labelled pairs flip the same way (-3.1 points), above the 1-point
    tolerance but what chance alone does one time in two."""
    actual, score, reference, threshold, labels = _flipped(64, worse=2, better=0)
    result = compare_decisions(actual, score, reference, threshold, TOLERANCES["int8"], labels)
    assert result.accuracy_delta == pytest.approx(-2 / 64) and result.p_value == pytest.approx(0.5)
    assert result.passed
    assert "2 pairs now wrong, 0 now right: McNemar p=0.5; this sample shows changes from 9.4%" in result.describe()


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_a_real_loss_fails_and_balanced_flips_do_not(precision):
    tol = TOLERANCES[precision]
    loss = _gate(1000, 30, 2, tol)  # -2.8 points, p ~ 1e-7
    assert not loss.passed and loss.p_value < 1e-6
    balanced = _gate(1000, 20, 19, tol)
    assert balanced.passed and balanced.accuracy_delta == pytest.approx(-0.001)
    small = _gate(1000, 3, 0, tol)  # 0.3 points, p = 0.25
    assert small.passed


def test_the_gate_tolerates_a_significant_change_within_the_precisions_delta():
    within = _gate(4000, 16, 0, TOLERANCES["int8"])  # -0.4 points < 1
    assert within.p_value < 1e-4 and within.passed
    beyond = _gate(4000, 16, 0, TOLERANCES["fp32"])  # fp32 allows none
    assert not beyond.passed


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


def test_int8_judges_a_bce_score_by_its_decisions_not_its_elements():
    """A quantized bce export moves a probability near the threshold beyond the element bound: that alone
    passes; a wrong decision on a decisive pair, or a non-finite score, still fails."""
    run, threshold, labels = reference_run("bce")
    tol = TOLERANCES["int8"]
    near = int(np.argmin(np.abs(run["score"] - threshold)))
    moved = run["score"].copy()
    moved[near] += 0.35 if moved[near] < threshold else -0.35  # beyond the element bound (0.2 scale + 0.2 own)
    actual = {"features": run["features"], "score": moved, "same": decide(moved, threshold, "bce")}
    result = compare_runs(actual, run, threshold, tol, "int8", labels, score_is_distance=False)
    score = next(o for o in result.outputs if o.name == "score")
    assert result.passed and score.outside == 1 and not score.gating and "not gating" in score.describe()
    decisive = int(np.argmax(run["score"]))
    flipped = {**actual, "same": actual["same"].copy()}
    flipped["same"][decisive] = not flipped["same"][decisive]
    assert not compare_runs(flipped, run, threshold, tol, "int8", labels, score_is_distance=False).passed
    broken = {**actual, "score": np.where(np.arange(len(moved)) == 0, np.nan, moved).astype(np.float32)}
    assert not compare_runs(broken, run, threshold, tol, "int8", labels, score_is_distance=False).passed
    assert not compare_runs(
        actual, run, threshold, TOLERANCES["bf16"], "bf16", labels, score_is_distance=False
    ).passed  # floats: elements gate


def test_int8_is_judged_on_the_real_pairs_alone_and_refuses_without_them():
    """Noise images fall outside an INT8 graph's calibrated ranges by design: a runner exact on
    the labelled pairs and wild on the random ones passes at INT8, and fails at fp32."""
    from types import SimpleNamespace

    from siamese.core.errors import SiameseError
    from siamese.parity.inputs import ParityInputs, check_runner

    rng = np.random.default_rng(3)
    n_real, n_random = 6, 4
    images = rng.integers(0, 256, (2 * (n_real + n_random), 4, 4, 3), dtype=np.uint8)
    labels = np.array([1, 0] * 3 + [-1] * n_random, np.int8)
    inputs = ParityInputs(images[: n_real + n_random], images[n_real + n_random :], labels, "test")
    noise = {bytes(img.tobytes()) for img in np.concatenate([inputs.image_a[n_real:], inputs.image_b[n_real:]])}

    def exact(batch):
        return batch.reshape(len(batch), -1)[:, :8].astype(np.float32) + 1

    def features(batch):
        f = exact(batch)
        wild = np.array([bytes(img.tobytes()) in noise for img in batch])
        return np.where(wild[:, None], f * 3, f)  # what a quantized graph may do to noise

    def pair(a, b):
        score = np.abs(features(a) - features(b)).sum(1) / 100
        return {"score": score.astype(np.float32), "same": score < 1.0}

    runner = SimpleNamespace(abilities=SimpleNamespace(precision="int8"), embed=features, pair=pair)
    exact_score = np.abs(exact(inputs.image_a) - exact(inputs.image_b)).sum(1) / 100
    reference = {
        "features": exact(inputs.images),
        "score": exact_score.astype(np.float32),
        "same": exact_score < 1.0,
    }
    assert check_runner(runner, inputs, reference, 1.0, "int8", score_is_distance=True).passed
    runner.abilities.precision = "fp32"
    assert not check_runner(runner, inputs, reference, 1.0, "fp32", score_is_distance=True).passed
    runner.abilities.precision = "int8"
    unlabelled = ParityInputs(inputs.image_a, inputs.image_b, np.full(len(labels), -1, np.int8), "noise only")
    with pytest.raises(SiameseError, match="judged on labelled real pairs"):
        check_runner(runner, unlabelled, reference, 1.0, "int8", score_is_distance=True)


def test_a_distance_between_near_identical_features_carries_their_rounding_not_a_runtime_error():
    # a collapsed network (the dry GPU check's few steps): features of scale 1 nearly coincide,
    # so distances are ~1e-4 and an fp32 runtime's rounding of 1e-7 in them is 1e-3 of their scale
    features = np.ones((4, 8), np.float32)
    score = np.array([1e-4, 2e-4], np.float32)
    reference = {"features": features, "score": score, "same": score < 0.5}
    rounded = {**reference, "score": score + 1e-7}
    tol = TOLERANCES["fp32"]
    assert compare_runs(rounded, reference, 0.5, tol, "fp32", score_is_distance=True).passed
    wrong = {**reference, "score": score * 3}  # beyond what the features' rounding explains
    assert not compare_runs(wrong, reference, 0.5, tol, "fp32", score_is_distance=True).passed


def test_probabilities_near_zero_are_judged_against_their_range():
    """A barely trained bce network may give every pair a probability near 0, where a rounding of
    the logit moves each by the same fraction of itself (the dry GPU check's ort-cpu once failed
    on 8.7e-4 of a batch's largest probability, 7e-8 in all): no error of the runtime. A real
    error on those probabilities still fails."""
    run, threshold, labels = reference_run("bce")
    run["score"] = (run["score"] * 1e-4).astype(np.float32)
    run["same"] = decide(run["score"], threshold, "bce")
    rounded = {**run, "score": run["score"] * np.float32(1 + 1e-3)}
    tol = TOLERANCES["fp32"]
    assert compare_runs(rounded, run, threshold, tol, "fp32", labels, score_is_distance=False).passed
    wrong = {**run, "score": run["score"] + np.float32(1e-3)}
    result = compare_runs(wrong, run, threshold, tol, "fp32", labels, score_is_distance=False)
    assert [o.name for o in result.outputs if not o.passed] == ["score"]
