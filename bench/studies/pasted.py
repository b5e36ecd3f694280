"""Does detection and framing give photos the verdicts the network gives on framed faces?

`python -m bench.studies.pasted --export DIR --json pasted.json --figure framing.png` pastes every
image of the 1,000 `pairsDevTest.txt` pairs into a larger canvas (3-5x its side, the face
scaled 0.5-2x, at a random position, on a random-noise or a natural face-free background; seeded),
then verifies the pairs with the export five ways: the original images as in training (every LFW
figure of the project) and through detection and framing; the pasted ones cut out exactly where
they were pasted (what a perfect detector would give), through detection and framing
(siamese-verify's default), and resized whole (`--no-detect`). It reports each accuracy with its
95% interval and the pairs left undecided, and McNemar's test between the ways of reading the
pasted images, so a gap can be placed: in the pasting itself, or in the detector's box. `--figure` draws one photo,
its detected box, the crop the network sees and the LFW image it should resemble.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Pasted:
    scene: np.ndarray  # (side, side, 3) uint8: the photo a user would have
    box: tuple[int, int, int, int]  # left, top, right, bottom: where the LFW frame went

    def cut_out(self) -> np.ndarray:
        left, top, right, bottom = self.box
        return self.scene[top:bottom, left:right]


def paste(rgb: np.ndarray, rng: np.random.Generator, backgrounds: list[np.ndarray]) -> Pasted:
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
    return Pasted(canvas, (int(x), int(y), int(x + face_side), int(y + face_side)))


def paste_images(keys: list[str], image_root: Path, dest: Path, seed: int) -> tuple[Path, Path]:
    """Each image of `keys` pasted into a scene, written under dest/scenes, and the part of the
    scene where it was pasted, under dest/cut-out; both as JPEG, as a user's photos would be."""
    rng = np.random.default_rng(seed)
    backgrounds = [img for _, img in face_free_images()]
    scenes, cut_outs = dest / "scenes", dest / "cut-out"
    for key in keys:
        pasted = paste(decode_rgb(image_root / key), rng, backgrounds)
        for folder, pixels in ((scenes, pasted.scene), (cut_outs, pasted.cut_out())):
            (folder / key).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(folder / key)
    return scenes, cut_outs


def mcnemar(first: list, second: list) -> dict:
    """Pairs the first reading gets right and the second wrong, the reverse, and McNemar's p."""
    both = [(a, b) for a, b in zip(first, second, strict=True) if a.correct is not None and b.correct is not None]
    gained = sum(a.correct and not b.correct for a, b in both)
    lost = sum(b.correct and not a.correct for a, b in both)
    return {"first_right_second_wrong": gained, "second_right_first_wrong": lost, "p_value": mcnemar_p(lost, gained)}


ORIGINAL = "original, as in training: its centred crop share, resized (the LFW figures)"
CUT_OUT = "pasted, cut out where it was pasted (a perfect detector)"
FRAMED = "pasted, detected and framed (siamese-verify)"
WHOLE = "pasted, whole frame (--no-detect)"


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
    if f.landmarks is not None:
        axes[0].scatter(*zip(*f.landmarks, strict=True), s=6, color="red")
    axes[0].set_title(f"a photo ({photo.shape[1]} x {photo.shape[0]}) and the face found")
    axes[1].imshow(framed.pixels)
    how = "aligned by landmarks" if framed.how.startswith("aligned") else "cropped by the box"
    axes[1].set_title(f"the network's view (128 x 128): {how}")
    axes[2].imshow(resize(original, 128))
    axes[2].set_title("the LFW image as the network saw it in training")
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
    keys = sorted({k for p in pairs for k in (p.a, p.b)})
    detecting, whole = Verifier(export_dir, detect=True), Verifier(export_dir, detect=False)
    with tempfile.TemporaryDirectory() as tmp:
        scenes, cut_outs = paste_images(keys, location.image_root, Path(tmp), seed)
        runs = {
            ORIGINAL: whole.verify_pairs(pairs, location.image_root),
            "original, detected and framed": detecting.verify_pairs(pairs, location.image_root),
            CUT_OUT: whole.verify_pairs(pairs, cut_outs),
            FRAMED: detecting.verify_pairs(pairs, scenes),
            WHOLE: whole.verify_pairs(pairs, scenes),
        }
        if figure:
            key = keys[0]
            original = detecting.framer.framing.network_view(decode_rgb(location.image_root / key))
            draw(figure, decode_rgb(scenes / key), detecting.frame(scenes / key), original)
    report = {name: accuracy_of(rows) for name, rows in runs.items()}
    report["mcnemar"] = {
        "framed vs whole frame": mcnemar(runs[FRAMED], runs[WHOLE]),
        "framed vs cut out where pasted": mcnemar(runs[FRAMED], runs[CUT_OUT]),
        "framed vs original": mcnemar(runs[FRAMED], runs[ORIGINAL]),
    }
    report["setup"] = {"export": str(export_dir), "model": detecting.folder.describe(), "pairs": len(pairs),
                       "images": len(keys), "seed": seed, "pair_file": pairs_name}  # fmt: skip
    for name, figures in report.items():
        click.echo(f"{name}: {figures}")
    if json_out:
        write_json(json_out, report)


if __name__ == "__main__":
    main()
