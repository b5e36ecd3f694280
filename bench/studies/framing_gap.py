"""Where does a photo's framing lose accuracy? The pasted-photo test taken apart, on the
validation pairs of the export's training run (held-out training identities: never the test
pairs, so what it finds may tune the framing).

`python -m bench.studies.framing_gap --checkpoint runs/lfw/bce-diff-prod/checkpoint.pt --export
exports/lfw-bce-diff-prod-fp32 --json gap.json` pastes each validation image into a scene as
bench.studies.pasted does (its own seed), then verifies the pairs with the export from:

- original: the LFW frames as the network saw them in training;
- cut out: the scene cut exactly where the frame was pasted (the pasting's own cost);
- detected and framed: siamese-verify's default (the detector's box, looked at twice);
- one look: the detector's first box (and landmarks) only;
- true box: the box and landmarks the detector finds on the original frame, carried into the
  scene (a perfect detector, the framing rule unchanged);
- original, cropped: that same framing rule applied to the original frame (beyond it, its edge repeated).

Each framing is the export's: aligned by the five landmarks where its metadata holds them
(exports since 2026-12-06), else cropped by the box.

True box against original-cropped is the cost of what surrounds the frame in the scene; framed
against true box is the detector's error.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import numpy as np

from bench.studies.detectors import face_free_images
from bench.studies.pasted import accuracy_of, paste
from siamese.artifacts.checkpoint import load_checkpoint
from siamese.core.files import write_json
from siamese.core.pairs import Pair
from siamese.core.preprocess import decode_rgb, resize
from siamese.detect import Face
from siamese.detect.frame import subject
from siamese.tasks.verify import Verdict, Verifier
from siamese.training.config import TrainConfig
from siamese.training.run import load_dataset


def validation_pairs(checkpoint: Path, lfw: Path | None, limit: int | None) -> tuple[list[Pair], Path]:
    """The validation pairs the run chose its threshold on, rebuilt from its recorded recipe."""
    recorded = load_checkpoint(checkpoint).config
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in recorded.items() if k in known})
    if lfw is not None:
        cfg.data = str(lfw)
    dataset = load_dataset(cfg)
    if dataset.val is None:
        raise click.ClickException(f"{checkpoint}: its run held out no validation identities")
    keys = dataset.bank.keys
    pairs = [
        Pair(keys[a], keys[b], int(same))
        for a, b, same in zip(dataset.val.a.tolist(), dataset.val.b.tolist(), dataset.val.same.tolist(), strict=True)
    ]
    if limit:
        pairs = pairs[:limit]
    return pairs, Path(dataset.info["image_root"])


def views(verifier: Verifier, original: np.ndarray, rng, backgrounds) -> dict[str, np.ndarray]:
    """One image as each row of the study shows it to the network."""
    framer, size = verifier.framer, verifier.folder.image_size
    framing = framer.framing
    pasted = paste(original, rng, backgrounds)
    left, top, right, _ = pasted.box
    scale = (right - left) / original.shape[1]
    detector = framer.detector
    on_original, in_scene = subject(detector.detect(original)), detector.detect(pasted.scene)
    true_box = on_original.moved(scale, left, top)
    one_look = subject(in_scene) if in_scene else true_box

    def framed_by_rule(rgb: np.ndarray, face: Face) -> np.ndarray:
        return resize(framing.view(rgb, face), size)

    return {
        "original": resize(framing.network_view(original), size),
        "cut out where pasted": resize(framing.network_view(pasted.cut_out()), size),
        "detected and framed (siamese-verify)": framer.frame(pasted.scene, "scene").pixels,
        "one look of the detector": framed_by_rule(pasted.scene, one_look),
        "true box in the scene": framed_by_rule(pasted.scene, true_box),
        "original, cropped by the rule": framed_by_rule(original, on_original),
    }


@click.command()
@click.option("--checkpoint", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--export", "export_dir", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--lfw", "lfw_dir", type=click.Path(path_type=Path, exists=True), default=None)
@click.option("--limit", type=int, default=None, help="only the first N validation pairs (a quick look)")
@click.option("--seed", type=int, default=7)
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None)
def main(checkpoint, export_dir, lfw_dir, limit, seed, json_out):
    pairs, image_root = validation_pairs(checkpoint, lfw_dir, limit)
    verifier = Verifier(export_dir, detect=True)
    rng, backgrounds = np.random.default_rng(seed), [img for _, img in face_free_images()]
    keys = sorted({k for p in pairs for k in (p.a, p.b)})
    shown: dict[str, list[np.ndarray]] = {}
    for key in keys:
        for name, pixels in views(verifier, decode_rgb(image_root / key), rng, backgrounds).items():
            shown.setdefault(name, []).append(pixels)
    row = {k: i for i, k in enumerate(keys)}
    ia, ib = [row[p.a] for p in pairs], [row[p.b] for p in pairs]
    report = {}
    for name, pixels in shown.items():
        scores, same = verifier.decide(verifier.embed(np.stack(pixels)), ia, ib)
        verdicts = [Verdict(p.a, p.b, float(s), bool(d), p.same) for p, s, d in zip(pairs, scores, same, strict=True)]
        report[name] = accuracy_of(verdicts)
        click.echo(f"{name}: {report[name]}")
    report["setup"] = {"export": str(export_dir), "model": verifier.folder.describe(), "checkpoint": str(checkpoint),
                       "validation_pairs": len(pairs), "images": len(keys), "seed": seed}  # fmt: skip
    if json_out:
        write_json(json_out, report)


if __name__ == "__main__":
    main()
