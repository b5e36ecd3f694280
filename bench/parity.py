"""Parity of a runtime against the reference (eager fp32 on CPU), Polygraphy-style.

Inputs are real labelled LFW test pairs plus seeded random images; per output we report
max/mean absolute error, error relative to the reference's scale, the embeddings' cosine
similarity, and what matters for verification: the decision agreement rate and the change
in accuracy on the labelled pairs. Inputs and reference outputs can be saved to an .npz and
loaded elsewhere, to compare runtimes across machines.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from siamese.artifacts import ExportFolder
from siamese.compare import TOLERANCES, Tolerance, compare_output
from siamese.data import find_lfw, locate_lfw, random_pairs, sample_pairs
from siamese.errors import SiameseError


@dataclass
class ParityInputs:
    image_a: np.ndarray  # (N, S, S, 3) uint8
    image_b: np.ndarray
    labels: np.ndarray  # (N,) int8: 1 same, 0 different, -1 random pair (no label)
    source: str


def parity_inputs(export: ExportFolder, pairs_file: Path | None, n_pairs: int, n_random: int, seed: int = 0):
    """Labelled pairs (`--pairs`, else the LFW test split when found) plus seeded random pairs."""
    size = export.image_size
    if pairs_file is None and (folder := find_lfw()) is not None:
        pairs_file = locate_lfw(folder).test_pairs
    if pairs_file is not None and n_pairs > 0:
        a, b, labels = sample_pairs(pairs_file, size, n_pairs, seed)
        source = f"{len(labels)} labelled pairs from {pairs_file}"
    else:
        a = b = np.zeros((0, size, size, 3), np.uint8)
        labels = np.zeros(0, np.int8)
        source = "random images only (no LFW found; pass --pairs)"
    ra, rb = random_pairs(n_random, size, seed)
    return ParityInputs(
        np.concatenate([a, ra]),
        np.concatenate([b, rb]),
        np.concatenate([labels, np.full(n_random, -1, np.int8)]),
        source + f" + {n_random} seeded random pairs",
    )


def run_outputs(runtime, inputs: ParityInputs, batch: int = 32) -> dict[str, np.ndarray]:
    """Features of every image (a then b), and score/same of every pair, in batches."""
    n = len(inputs.labels)
    features, scores, same = [], [], []
    for i in range(0, n, batch):
        a, b = inputs.image_a[i : i + batch], inputs.image_b[i : i + batch]
        out = runtime.pair(a, b)
        scores.append(out["score"])
        same.append(out["same"])
    images = np.concatenate([inputs.image_a, inputs.image_b])
    for i in range(0, len(images), batch):
        features.append(runtime.embed(images[i : i + batch]))
    return {
        "features": np.concatenate(features).astype(np.float32),
        "score": np.concatenate(scores).astype(np.float32),
        "same": np.concatenate(same).astype(bool),
    }


def save_reference(path: Path, inputs: ParityInputs, reference: dict) -> None:
    np.savez_compressed(
        path,
        image_a=inputs.image_a,
        image_b=inputs.image_b,
        labels=inputs.labels,
        source=np.array(inputs.source),
        **{f"ref_{k}": v for k, v in reference.items()},
    )


def load_reference(path: Path) -> tuple[ParityInputs, dict]:
    try:
        data = np.load(path)
        inputs = ParityInputs(data["image_a"], data["image_b"], data["labels"], str(data["source"]))
        return inputs, {k[4:]: data[k] for k in data.files if k.startswith("ref_")}
    except (OSError, KeyError, ValueError) as exc:
        raise SiameseError(f"{path}: not a saved parity reference ({exc})") from None


def tolerance_for(precision: str, overrides: dict[str, float], output: str) -> Tolerance:
    tol = TOLERANCES[precision]
    return replace(tol, rtol=overrides[output]) if output in overrides else tol


def check_parity(
    actual: dict, reference: dict, labels: np.ndarray, precision: str, threshold: float, overrides=None
) -> dict:
    """Compare every output; decisions are judged on the decisive pairs only.

    A pair whose reference score lies within the score tolerance of the threshold may flip
    legitimately (its answer is a coin toss at this precision); such borderline pairs are
    counted and excluded from the pass/fail agreement, and included in `decision_agreement`.
    """
    overrides = overrides or {}
    score_tol = tolerance_for(precision, overrides, "score")
    band = score_tol.rtol * float(np.abs(reference["score"]).max(initial=0.0))
    decisive = np.abs(reference["score"] - threshold) > band
    outputs = [
        compare_output(k, actual[k], reference[k], tolerance_for(precision, overrides, k))
        for k in reference
        if k != "same"
    ]
    outputs.append(
        compare_output(
            "same",
            actual["same"][decisive],
            reference["same"][decisive],
            tolerance_for(precision, overrides, "same"),
        )
    )
    labelled = labels >= 0
    result = {
        "passed": all(o.passed for o in outputs),
        "outputs": [o.to_dict() for o in outputs],
        "decision_agreement": float((actual["same"] == reference["same"]).mean()),
        "borderline_pairs": int((~decisive).sum()),
    }
    if labelled.any():
        truth = labels[labelled] == 1
        acc = float((actual["same"][labelled] == truth).mean())
        result |= {
            "accuracy": acc,
            "accuracy_delta": acc - float((reference["same"][labelled] == truth).mean()),
        }
    return result
