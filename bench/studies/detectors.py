"""Which face detector, and where does LFW's face sit? The measurement behind docs/framing.md.

`python -m bench.studies.detectors --lfw DIR --json detectors.json` runs every registered
detector (siamese.detect.DETECTORS) over

- every deep-funneled LFW image (13,233): the share with at least one face, and ms per image;
- face-free images: the photographs shipped in scikit-image's wheel that show no face (a cat,
  coffee, rockets, bricks, text, ...), each whole and as its four quarters, resized to
  250 x 250: the share where a face is "found" (false detections);

and, on the images of training identities only (the test identities never tune anything),
the face's box (the one siamese-verify chooses) relative to the 250 x 250 frame: median and spread of its centre and
side, and of each of its five landmarks where the detector gives them. Those are the framing
(siamese.detect.framing) a detected face is aligned or cropped to.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

from siamese.core.files import write_json
from siamese.core.pairs import identities, identity_of, read_pairs
from siamese.data.lfw import find_lfw, locate_lfw
from siamese.detect import DETECTORS, create
from siamese.detect.base import LANDMARKS
from siamese.detect.frame import subject

FACE_FREE = (
    "brick", "chelsea", "coffee", "coins", "color", "grass", "gravel", "horse", "hubble_deep_field", "ihc",
    "logo", "moon", "motorcycle_left", "page", "retina", "rocket", "text", "clock_motion", "cell",
)  # fmt: skip


def face_free_images(size: int = 250) -> list[tuple[str, np.ndarray]]:
    """scikit-image's face-free sample photographs, whole and quartered, as RGB."""
    from importlib.util import find_spec

    from PIL import Image

    spec = find_spec("skimage")
    if spec is None:
        raise click.ClickException("the face-free images come from scikit-image: pip install scikit-image")
    folder = Path(spec.origin).parent / "data"
    images = []
    for name in FACE_FREE:
        path = next(folder.glob(f"{name}.*"))
        img = Image.open(path).convert("RGB")
        w, h = img.size
        crops = {"whole": (0, 0, w, h)}
        crops |= {
            f"q{i}": ((i % 2) * w // 2, (i // 2) * h // 2, (i % 2 + 1) * w // 2, (i // 2 + 1) * h // 2)
            for i in range(4)
        }
        for crop, box in crops.items():
            images.append((f"{name}/{crop}", np.asarray(img.crop(box).resize((size, size), Image.Resampling.BILINEAR))))
    return images


def measure(detector, images) -> tuple[dict, list]:
    """The detection rate and time over `images`, and each image's face (`subject`; or None)."""
    chosen, seconds = [], []
    for _, rgb in images:
        started = time.perf_counter()
        faces = detector.detect(rgb)
        seconds.append(time.perf_counter() - started)
        chosen.append(subject(faces) if faces else None)
    found = sum(face is not None for face in chosen)
    return {"images": len(images), "with_a_face": found, "rate": found / max(1, len(images)),
            "ms_per_image_median": 1000 * float(np.median(seconds))}, chosen  # fmt: skip


def box_statistics(boxes, frame: int) -> dict:
    cx = np.array([b.centre[0] for b in boxes]) / frame
    cy = np.array([b.centre[1] for b in boxes]) / frame
    side = np.array([b.side for b in boxes]) / frame

    def spread(v):
        return {"median": float(np.median(v)), "p05": float(np.percentile(v, 5)), "p95": float(np.percentile(v, 95)),
                "mad": float(np.median(np.abs(v - np.median(v))))}  # fmt: skip

    stats = {"faces": len(boxes), "centre_x": spread(cx), "centre_y": spread(cy), "side": spread(side)}
    marked = [b.landmarks for b in boxes if b.landmarks is not None]
    if marked:  # each landmark's place (siamese.detect.base.LANDMARKS): framing.LFW_LANDMARKS
        points = np.array(marked) / frame  # (faces, 5, 2)
        stats["landmarks"] = {
            name: {"x": spread(points[:, i, 0]), "y": spread(points[:, i, 1])} for i, name in enumerate(LANDMARKS)
        }
    return stats


@click.command()
@click.option(
    "--lfw",
    "lfw_dir",
    type=click.Path(path_type=Path, exists=True),
    default=None,
    help="default: as siamese-train finds it",
)
@click.option("--limit", type=int, default=None, help="only this many LFW images (a quick look)")
@click.option("--detector", "detectors", multiple=True, type=click.Choice(list(DETECTORS)), help="default: all")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None)
def main(lfw_dir, limit, detectors, json_out):
    from PIL import Image

    location = locate_lfw(lfw_dir or find_lfw())
    root = location.image_root
    files = sorted(root.glob("*/*.jpg"))[:limit]
    training = identities(read_pairs(location.train_pairs))
    lfw = [(str(f.relative_to(root)), np.asarray(Image.open(f).convert("RGB"))) for f in files]
    free = face_free_images()
    report = {}
    for name in detectors or DETECTORS:
        detector = create(name)
        (on_lfw, chosen), (on_free, false_faces) = measure(detector, lfw), measure(detector, free)
        boxes = [b for (key, _), b in zip(lfw, chosen, strict=True) if b and identity_of(key) in training]
        framing = box_statistics(boxes, 250)
        on_free["found_in"] = [key for (key, _), b in zip(free, false_faces, strict=True) if b]
        report[name] = {"lfw": on_lfw, "face_free": on_free, "framing_on_training_identities": framing}
        click.echo(f"{name}: {json.dumps(report[name], indent=1)}")
    if json_out:
        write_json(json_out, report)


if __name__ == "__main__":
    main()
