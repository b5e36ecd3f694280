"""Parity inputs, a runner's outputs on them, and saved references other tools can check.

Inputs are real labelled pairs (a pair file, by default the LFW test split when present)
plus seeded random images. A reference saved with `save_reference` is an `.npz` for
`siamese-bench --load-reference`, and beside it the same inputs and outputs in Polygraphy's
JSON format, so `polygraphy run embedding.onnx --onnxrt --load-inputs ... --load-outputs ...`
checks an artifact independently of this toolkit.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from siamese.core.errors import SiameseError, first_line
from siamese.data.lfw import random_pairs, sample_pairs
from siamese.parity.compare import ParityResult, coarser, compare_runs, tolerance_for

BATCH = 32  # parity runs in batches of this many pairs (and images)


@dataclass
class ParityInputs:
    image_a: np.ndarray  # (N, S, S, 3) uint8
    image_b: np.ndarray
    labels: np.ndarray  # (N,) int8: 1 same, 0 different, -1 no label (random pairs)
    source: str

    @property
    def images(self) -> np.ndarray:
        return np.concatenate([self.image_a, self.image_b])

    def real_pairs(self, reference: dict) -> tuple[ParityInputs, dict]:
        """The labelled pairs alone, and their rows of `reference` (features: a rows, then b rows)."""
        keep = self.labels >= 0
        n = len(self.labels)
        kept = ParityInputs(self.image_a[keep], self.image_b[keep], self.labels[keep], f"{self.source}: labelled only")
        rows = np.concatenate([np.flatnonzero(keep), n + np.flatnonzero(keep)])
        subset = {k: (v[rows] if k == "features" else v[keep]) for k, v in reference.items()}
        return kept, subset


def parity_inputs(
    image_size: int,
    pairs_file: Path | None,
    n_pairs: int,
    n_random: int,
    seed: int = 0,
    image_root=None,
    *,
    crop: float,
) -> ParityInputs:
    """`n_pairs` labelled pairs of `pairs_file` (none without one), each frame's centred `crop`
    share as the model was trained on, and `n_random` noise pairs."""
    if pairs_file is not None and n_pairs > 0:
        a, b, labels = sample_pairs(pairs_file, image_size, n_pairs, seed, image_root, crop=crop)
        source = f"{len(labels)} labelled pairs of {Path(pairs_file).name}"
    else:
        a = b = np.zeros((0, image_size, image_size, 3), np.uint8)
        labels = np.zeros(0, np.int8)
        source = "no labelled pairs (no pair file: pass --pairs or set $SIAMESE_LFW)"
    return with_random_pairs(a, b, labels, source, n_random, image_size, seed)


def with_random_pairs(a, b, labels, source: str, n_random: int, image_size: int, seed: int = 0) -> ParityInputs:
    """Labelled pairs followed by `n_random` seeded noise pairs (label -1)."""
    ra, rb = random_pairs(n_random, image_size, seed)
    return ParityInputs(
        np.concatenate([a, ra]),
        np.concatenate([b, rb]),
        np.concatenate([labels, np.full(n_random, -1, np.int8)]).astype(np.int8),
        f"{source} + {n_random} seeded random pairs",
    )


def run_outputs(runner, inputs: ParityInputs, batch: int = BATCH) -> dict[str, np.ndarray]:
    """Features of every image (a then b) from the embedding graph, score and same from the pair graph."""
    pairs = [
        runner.pair(inputs.image_a[i : i + batch], inputs.image_b[i : i + batch])
        for i in range(0, len(inputs.labels), batch)
    ]
    images = inputs.images
    features = [runner.embed(images[i : i + batch]) for i in range(0, len(images), batch)]
    return {
        "features": np.concatenate(features).astype(np.float32),
        "score": np.concatenate([p["score"] for p in pairs]).astype(np.float32),
        "same": np.concatenate([p["same"] for p in pairs]).astype(bool),
    }


def check_runner(
    runner,
    inputs: ParityInputs,
    reference: dict,
    threshold: float,
    export_dtype: str,
    overrides=None,
    *,
    score_is_distance: bool,
):
    """The runner's outputs against the reference, at the coarser of its precision and the export's dtype."""
    precision = coarser(runner.abilities.precision, export_dtype)
    tol = tolerance_for(precision, overrides=overrides)
    if tol.real_pairs_only:
        if not (inputs.labels >= 0).any():
            raise SiameseError(f"{precision} parity is judged on labelled real pairs: pass --pairs or set $SIAMESE_LFW")
        inputs, reference = inputs.real_pairs(reference)
    outputs = run_outputs(runner, inputs)
    return compare_runs(
        outputs, reference, threshold, tol, precision, inputs.labels, score_is_distance=score_is_distance
    )


def check_compare_graph(
    runner, inputs: ParityInputs, reference: dict, threshold: float, export_dtype: str, *, score_is_distance: bool
) -> ParityResult:
    """compare(embed(a), embed(b)) must give what pair(a, b) gives, from the reference's own features."""
    n = len(inputs.labels)
    precision = coarser(runner.abilities.precision, export_dtype)
    out = runner.compare(reference["features"][:n], reference["features"][n:])
    expected = {"score": reference["score"], "same": reference["same"]}
    tol = tolerance_for(precision)
    return compare_runs(out, expected, threshold, tol, precision, inputs.labels, score_is_distance=score_is_distance)


def save_reference(path: Path, inputs: ParityInputs, reference: dict) -> list[Path]:
    """The .npz for --load-reference, and Polygraphy JSON inputs/outputs for the embedding and pair graphs."""
    path = Path(path)
    np.savez_compressed(
        path,
        image_a=inputs.image_a,
        image_b=inputs.image_b,
        labels=inputs.labels,
        source=np.array(inputs.source),
        **{f"ref_{k}": v for k, v in reference.items()},
    )
    from polygraphy.comparator import IterationResult, RunResults
    from polygraphy.json import save_json

    written = [path]
    feeds = {
        "embedding": ({"images": inputs.images}, {"features": reference["features"]}),
        "pair": (
            {"image_a": inputs.image_a, "image_b": inputs.image_b},
            {"score": reference["score"], "same": reference["same"]},
        ),
    }
    for graph, (feed, outputs) in feeds.items():
        stem = path.with_suffix("")
        inputs_json, outputs_json = Path(f"{stem}.{graph}.inputs.json"), Path(f"{stem}.{graph}.outputs.json")
        save_json([feed], str(inputs_json))
        results = RunResults()
        results.append(("siamese-reference", [IterationResult(outputs, runner_name="siamese-reference")]))
        results.save(str(outputs_json))
        written += [inputs_json, outputs_json]
    return written


def load_reference(path: Path) -> tuple[ParityInputs, dict]:
    try:
        data = np.load(path)
        if not isinstance(data, np.lib.npyio.NpzFile):  # a lone .npy array
            raise ValueError(f"a {type(data).__name__}, not the .npz archive --save-inputs writes")
        inputs = ParityInputs(data["image_a"], data["image_b"], data["labels"], str(data["source"]))
        return inputs, {k[4:]: data[k] for k in data.files if k.startswith("ref_")}
    except (OSError, KeyError, ValueError, IndexError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise SiameseError(f"{path}: not a saved parity reference ({first_line(exc)})") from None
