"""Which of several detected faces is the one a photo is of? The measurement behind
`siamese.detect.frame.subject` (docs/framing.md).

`python -m bench.studies.face_choice --json face-choice.json` takes images of **training people**
(`pairsDevTrain.txt`; the test people never tune anything), detects every face in each LFW frame
and in the frame pasted into a larger scene as the pasted-photo study pastes it (3-5x canvas,
0.5-2x scale, a noise field or a face-free photograph, written as JPEG), and counts, for each
rule of choosing one face, the images where the chosen face is not the frame's own (its box
centre more than 0.15 of the frame from where LFW's faces sit, or its side not within 0.6-1.6x
of theirs): a bystander in the frame or a false face in the background.
"""

from __future__ import annotations

import io
from functools import partial
from pathlib import Path

import click
import numpy as np
from PIL import Image

from bench.studies.detectors import face_free_images
from bench.studies.pasted import paste
from siamese.core.files import write_json
from siamese.core.pairs import read_pairs
from siamese.core.preprocess import decode_rgb
from siamese.data.lfw import find_lfw, locate_lfw
from siamese.detect import Face, create
from siamese.detect.frame import SCORE_MARGIN, subject
from siamese.detect.framing import Framing

MARGINS = (0.01, 0.02, SCORE_MARGIN, 0.05, 0.08)  # SCORE_MARGIN: the rule siamese-verify uses
RULES = {
    "largest": lambda faces: max(faces, key=lambda f: f.side),
    "most confident": lambda faces: max(faces, key=lambda f: f.score),
    **{f"largest within {m} of the best score": partial(subject, margin=m) for m in MARGINS},
}


def in_frame(face: Face, left: float, top: float, side: float) -> Face:
    """`face`, found in a scene where a 250 x 250 frame was pasted at (left, top) with `side`,
    in that frame's pixels."""
    k = 250 / side
    return Face((face.x - left) * k, (face.y - top) * k, face.width * k, face.height * k, face.score)


def is_own_face(face: Face, framing: Framing) -> bool:
    cx, cy = face.centre
    near = np.hypot(cx / 250 - framing.centre_x, cy / 250 - framing.centre_y) < 0.15
    return near and 0.6 < face.side / 250 / framing.side < 1.6


def jpeg(rgb: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG")
    return np.asarray(Image.open(buffer).convert("RGB"))


@click.command()
@click.option("--lfw", "lfw_dir", type=click.Path(path_type=Path, exists=True), default=None)
@click.option("--images", "count", type=int, default=1500, help="images of training people, drawn at random")
@click.option("--seed", type=int, default=3, help="seed of the draw and of the pasting")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None)
def main(lfw_dir, count, seed, json_out):
    location = locate_lfw(lfw_dir or find_lfw())
    pairs = read_pairs(location.test_pairs.parent / "pairsDevTrain.txt")
    keys = sorted({k for p in pairs for k in (p.a, p.b)})
    rng = np.random.default_rng(seed)
    keys = [keys[i] for i in rng.permutation(len(keys))[:count]]
    detector, framing, backgrounds = create(), Framing(), [img for _, img in face_free_images()]
    found: dict[str, list[list[Face]]] = {"LFW frames": [], "pasted into scenes": []}
    for key in keys:
        original = decode_rgb(location.image_root / key)
        pasted = paste(original, rng, backgrounds)
        left, top, right, _ = pasted.box
        found["LFW frames"].append(detector.detect(original))
        found["pasted into scenes"].append(
            [in_frame(f, left, top, right - left) for f in detector.detect(jpeg(pasted.scene))]
        )
    report = {}
    for where, per_image in found.items():
        scored = [faces for faces in per_image if any(is_own_face(f, framing) for f in faces)]
        report[where] = {
            "images": len(per_image),
            "own_face_not_found": len(per_image) - len(scored),
            "several_faces": sum(len(faces) > 1 for faces in per_image),
            "wrong_face": {
                name: sum(not is_own_face(rule(faces), framing) for faces in scored) for name, rule in RULES.items()
            },  # fmt: skip
        }
        click.echo(f"{where}: {report[where]}")
    report["setup"] = {"pair_file": "pairsDevTrain.txt", "images": len(keys), "seed": seed, "detector": detector.name}
    if json_out:
        write_json(json_out, report)


if __name__ == "__main__":
    main()
