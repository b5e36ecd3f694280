"""Does detection and framing give photos the verdicts the network gives on framed faces?

`python -m bench.studies.pasted --export DIR --json pasted.json --figure framing.png` pastes every
image of the 1,000 `pairsDevTest.txt` pairs into a larger canvas (3-5x its side, the face
scaled 0.5-2x, at a random position, on a random-noise or a natural face-free background; seeded),
then verifies the pairs three ways with the export: the original images, the pasted ones through
detection and framing (siamese-verify's default), and the pasted ones resized whole
(`--no-detect`), and reports each accuracy with its 95% interval, the pairs left undecided, and
McNemar's test between the two ways of reading the pasted images. `--figure` draws one photo,
its detected box, the crop the network sees and the LFW image it should resemble.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
import numpy as np
from PIL import Image

from bench.pages import wilson_interval
from bench.studies.detectors import face_free_images
from siamese.core.files import write_json
from siamese.core.pairs import read_pairs
from siamese.core.preprocess import decode_rgb, resize
from siamese.data.lfw import find_lfw, locate_lfw
from siamese.parity.compare import mcnemar_p
from siamese.tasks.verify import Verifier


def paste(rgb: np.ndarray, rng: np.random.Generator, backgrounds: list[np.ndarray]) -> np.ndarray:
    """`rgb` (a 250 x 250 LFW frame) scaled 0.5-2x at a random place of a canvas 3-5x its side."""
    side = round(rgb.shape[0] * rng.uniform(3, 5))
    if rng.random() < 0.5:  # random: a smooth colour field with noise
        corners = rng.uniform(0, 255, (2, 2, 3))
        canvas = np.asarray(Image.fromarray(corners.astype(np.uint8)).resize((side, side), Image.Resampling.BILINEAR))
        canvas = (canvas + rng.normal(0, 12, canvas.shape)).clip(0, 255).astype(np.uint8)
    else:  # natural-looking: a face-free photograph
        canvas = resize(backgrounds[rng.integers(len(backgrounds))], side).copy()
    face_side = round(rgb.shape[0] * rng.uniform(0.5, 2))
    x, y = rng.integers(0, side - face_side + 1, 2)
    canvas[y : y + face_side, x : x + face_side] = resize(rgb, face_side)
    return canvas


def accuracy_of(rows) -> dict:
    decided = [r for r in rows if r.correct is not None]
    acc = sum(r.correct for r in decided) / len(decided)
    low, high = wilson_interval(acc, len(decided))
    return {"accuracy": acc, "ci95": [low, high], "decided": len(decided), "undecided": len(rows) - len(decided)}


def draw(path: Path, photo: np.ndarray, framed, original: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 4))
    plt.rcParams["axes.titlesize"] = 9
    axes[0].imshow(photo)
    f = framed.face
    axes[0].add_patch(patches.Rectangle((f.x, f.y), f.width, f.height, fill=False, color="lime", lw=2))
    axes[0].set_title(f"a photo ({photo.shape[1]} x {photo.shape[0]}) and the face found")
    axes[1].imshow(framed.pixels)
    axes[1].set_title("the crop the network sees (128 x 128)")
    axes[2].imshow(resize(original, 128))
    axes[2].set_title("the LFW image, resized whole")
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


@click.command()
@click.option("--export", "export_dir", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--lfw", "lfw_dir", type=click.Path(path_type=Path, exists=True), default=None)
@click.option("--pairs", "pairs_name", default="pairsDevTest.txt", help="pair file of the LFW folder")
@click.option("--limit", type=int, default=None, help="only the first N pairs (a quick look)")
@click.option("--seed", type=int, default=0)
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None)
@click.option("--figure", type=click.Path(path_type=Path), default=None)
def main(export_dir, lfw_dir, pairs_name, limit, seed, json_out, figure):
    location = locate_lfw(lfw_dir or find_lfw())
    pairs_file = location.test_pairs.parent / pairs_name
    pairs = read_pairs(pairs_file)
    pairs = pairs[: limit // 2] + pairs[len(pairs) // 2 :][: limit - limit // 2] if limit else pairs
    rng = np.random.default_rng(seed)
    backgrounds = [img for _, img in face_free_images()]
    keys = sorted({k for p in pairs for k in (p.a, p.b)})
    detecting, whole = Verifier(export_dir, detect=True), Verifier(export_dir, detect=False)
    with tempfile.TemporaryDirectory() as tmp:
        for key in keys:
            (Path(tmp) / key).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(paste(decode_rgb(location.image_root / key), rng, backgrounds)).save(Path(tmp) / key)
        runs = {
            "original, whole frame (the LFW figures)": whole.verify_pairs(pairs, location.image_root),
            "original, detected and framed": detecting.verify_pairs(pairs, location.image_root),
            "pasted, detected and framed (siamese-verify)": detecting.verify_pairs(pairs, Path(tmp)),
            "pasted, whole frame (--no-detect)": whole.verify_pairs(pairs, Path(tmp)),
        }
        if figure:
            key = keys[0]
            draw(
                figure,
                decode_rgb(Path(tmp) / key),
                detecting.frame(Path(tmp) / key),
                decode_rgb(location.image_root / key),
            )
    report = {name: accuracy_of(rows) for name, rows in runs.items()}
    framed, unframed = runs["pasted, detected and framed (siamese-verify)"], runs["pasted, whole frame (--no-detect)"]
    both = [(a, b) for a, b in zip(framed, unframed, strict=True) if a.correct is not None]
    gained = sum(a.correct and not b.correct for a, b in both)
    lost = sum(b.correct and not a.correct for a, b in both)
    report["mcnemar_framed_vs_whole"] = {"framed_right_whole_wrong": gained, "whole_right_framed_wrong": lost,
                                          "p_value": mcnemar_p(lost, gained)}  # fmt: skip
    report["setup"] = {"export": str(export_dir), "model": detecting.folder.describe(), "pairs": len(pairs),
                       "images": len(keys), "seed": seed, "pair_file": pairs_name}  # fmt: skip
    for name, figures in report.items():
        click.echo(f"{name}: {figures}")
    if json_out:
        write_json(json_out, report)


if __name__ == "__main__":
    main()
