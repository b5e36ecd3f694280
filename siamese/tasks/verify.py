"""Answer "same person?" with an export folder: one pair, or a whole pair list in batches."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from siamese.artifacts.folder import DEFAULT_POLICY, ExportFolder, ExportPolicy, default_export
from siamese.backends import create
from siamese.core.errors import SiameseError
from siamese.core.files import atomic_write, check_writable, write_json
from siamese.core.pairs import Pair
from siamese.core.preprocess import DECODE_WORKERS, check_pair_images, image_file
from siamese.core.spec import FEATURE_DIM, score_name
from siamese.detect.frame import Framed, Framer, NoFace

DEFAULT_RUNTIME = "ort-cpu"


@dataclass(frozen=True)
class Verdict:
    """One pair's answer: what `siamese-verify` prints and writes (a row of --output)."""

    image_a: str
    image_b: str
    score: float | None  # a probability (bce) or a distance (contrastive); None when undecided
    same: bool | None  # at the export's threshold; None when undecided
    label: int | None = None  # the pair list's label, where it has one
    faces_a: int | None = None  # faces found in each image (the largest confident one is used); None: not detected
    faces_b: int | None = None
    framed_a: str | None = None  # what detection did: the face's box and how it was framed
    framed_b: str | None = None
    undecided: str | None = None  # why there is no verdict (no face found in an image)

    @property
    def correct(self) -> bool | None:
        return None if self.label is None or self.same is None else self.same == bool(self.label)

    def to_dict(self) -> dict:
        return asdict(self)


class Verifier:
    """The embedding and compare graphs of one export, in one runtime (a name of siamese.backends)."""

    def __init__(
        self,
        export: Path | None = None,
        runtime: str = DEFAULT_RUNTIME,
        threads: int | None = None,
        policy: ExportPolicy = DEFAULT_POLICY,
        detect: bool = True,
        save_crops: Path | None = None,
    ):
        """`detect`: find the face and frame it as the export's training images (its metadata's
        framing); False: the whole image, resized. `save_crops`: write what the network sees."""
        self.folder = ExportFolder.open(export or default_export(), policy)
        self.runner = create(runtime, threads)
        reason = self.runner.unavailable(self.folder)
        if reason:
            raise SiameseError(f"runtime {runtime} cannot run here: {reason}")
        self.runner.load(self.folder, ("embedding", "compare"))
        self.metadata = self.folder.metadata
        framing = self.metadata.framing if detect else replace(self.metadata.framing, kind="whole")
        self.framer = Framer(framing, self.folder.image_size)
        self.save_crops = save_crops
        if save_crops is not None:
            check_writable(save_crops)

    @property
    def threshold(self) -> float:
        return self.metadata.threshold

    def describe(self, score: float, same: bool) -> str:
        relation = ">" if self.metadata.higher_is_same else "<"
        return (
            f"{'same' if same else 'different'} person: {score_name(self.metadata.variant)} {score:.4f} "
            f"(same if {relation} {self.threshold:.4f})"
        )

    def describe_framing(self) -> str:
        return self.framer.framing.describe()

    def model_record(self) -> dict:
        """The export's model record, and how this verifier frames its images."""
        return {**self.folder.model_record(), "framing": self.framer.framing.kind}

    def frame(self, path: Path, name: str | None = None) -> Framed:
        framed = self.framer.load(path)
        if self.save_crops is not None:
            from PIL import Image

            crop_file = self.save_crops / Path(name or Path(path).name).with_suffix(".png")
            crop_file.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(framed.pixels).save(crop_file)
        return framed

    def frame_all(self, paths: list[Path], names: list[str] | None = None) -> list[Framed | NoFace]:
        """Each image framed (decoded in parallel), or the NoFace that says why it could not be."""

        def one(i: int) -> Framed | NoFace:
            try:
                return self.frame(paths[i], names[i] if names else None)
            except NoFace as exc:
                return exc

        with ThreadPoolExecutor(max_workers=DECODE_WORKERS) as pool:
            return list(pool.map(one, range(len(paths))))

    def load_images(self, paths: list[Path]) -> np.ndarray:
        """The network's input for each image; an image without a face raises NoFace."""
        framed = self.frame_all(paths)
        for f in framed:
            if isinstance(f, NoFace):
                raise f
        return np.stack([f.pixels for f in framed])

    def framed_ahead(self, batches: list[tuple[list[Path], list[str]]]) -> Iterator[list[Framed | NoFace]]:
        """Each batch of (paths, names) framed while the runtime works on the one before it."""
        with ThreadPoolExecutor(max_workers=1) as ahead:
            pending = [ahead.submit(self.frame_all, *batch) for batch in batches[:1]]
            for batch in [*batches[1:], None]:
                framed = pending.pop().result()
                if batch is not None:
                    pending.append(ahead.submit(self.frame_all, *batch))
                yield framed

    def embed(self, images: np.ndarray, batch: int = 64) -> np.ndarray:
        return np.concatenate([self.runner.embed(images[i : i + batch]) for i in range(0, len(images), batch)])

    def decide(self, features: np.ndarray, ia, ib, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """Score and decision of pairs (features[ia[k]], features[ib[k]]), gathered a chunk at a time:
        memory follows the number of images, not of pairs."""
        ia, ib = np.asarray(ia), np.asarray(ib)
        outs = [
            self.runner.compare(features[ia[i : i + batch]], features[ib[i : i + batch]])
            for i in range(0, len(ia), batch)
        ]
        return np.concatenate([o["score"] for o in outs]), np.concatenate([o["same"] for o in outs]).astype(bool)

    def verify_files(self, a: Path, b: Path) -> Verdict:
        """One pair; an image without a face raises NoFace, naming it."""
        framed = self.frame_all([Path(a), Path(b)], [f"a-{Path(a).stem}", f"b-{Path(b).stem}"])
        for f in framed:
            if isinstance(f, NoFace):
                raise f
        features = self.embed(np.stack([f.pixels for f in framed]))
        score, same = self.decide(features, [0], [1])
        faces = [f.faces if self.framer.detects else None for f in framed]
        how = [f.describe() if self.framer.detects else None for f in framed]
        return Verdict(str(a), str(b), float(score[0]), bool(same[0]), None, *faces, *how)

    def verify_pairs(self, pairs: list[Pair], image_root: Path, batch: int = 64) -> list[Verdict]:
        """Every distinct image is decoded, framed and embedded once, however many pairs it is in.
        A pair with an image where no face is found is undecided, and the others go on."""
        keys = sorted({k for p in pairs for k in (p.a, p.b)})
        chunks = [keys[i : i + batch] for i in range(0, len(keys), batch)]
        framed: dict[str, Framed | NoFace] = {}
        features = [np.zeros((0, FEATURE_DIM), np.float32)]
        for chunk, found in zip(
            chunks, self.framed_ahead([([image_file(image_root, k) for k in c], c) for c in chunks]), strict=True
        ):
            framed |= dict(zip(chunk, found, strict=True))
            images = [f.pixels for f in found if not isinstance(f, NoFace)]
            if images:
                features.append(self.embed(np.stack(images), batch))
        row = {k: i for i, k in enumerate(k for k in keys if not isinstance(framed[k], NoFace))}
        decided = [p for p in pairs if p.a in row and p.b in row]
        ia, ib = [row[p.a] for p in decided], [row[p.b] for p in decided]
        score, same = self.decide(np.concatenate(features), ia, ib) if decided else ([], [])
        answers = {id(p): (float(s), bool(d)) for p, s, d in zip(decided, score, same, strict=True)}

        def faces(key: str) -> int | None:
            return framed[key].faces if self.framer.detects and not isinstance(framed[key], NoFace) else None

        def how(key: str) -> str | None:
            return framed[key].describe() if self.framer.detects and not isinstance(framed[key], NoFace) else None

        verdicts = []
        for p in pairs:
            label = None if p.same < 0 else p.same
            missing = [str(framed[k]) for k in (p.a, p.b) if isinstance(framed[k], NoFace)]
            s, d = answers.get(id(p), (None, None))
            found = (faces(p.a), faces(p.b), how(p.a), how(p.b))
            verdicts.append(Verdict(p.a, p.b, s, d, label, *found, "; ".join(missing) or None))
        return verdicts


def accuracy(rows: list[Verdict]) -> float | None:
    labelled = [r.correct for r in rows if r.correct is not None]
    return sum(labelled) / len(labelled) if labelled else None


def write_results(rows: list[Verdict], path: Path, model: dict) -> None:
    """The verdicts and the model that gave them (ExportFolder.model_record): a JSON object of
    both, or a CSV whose every row names the model too."""
    if path.suffix.lower() == ".json":
        write_json(path, {"model": model, "pairs": [r.to_dict() for r in rows]}, indent=1)
        return
    if path.suffix.lower() != ".csv":
        raise SiameseError(f"{path}: results are written as .csv or .json")

    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=[f.name for f in fields(Verdict)] + list(model))
            writer.writeheader()
            writer.writerows({**r.to_dict(), **model} for r in rows)

    atomic_write(path, write_csv)


def image_root_for(pairs_file: Path) -> Path:
    """The LFW images beside a pair file, else the pair file's own folder."""
    from siamese.data.lfw import locate_lfw

    try:
        return locate_lfw(pairs_file.parent).image_root
    except SiameseError:
        return pairs_file.parent


def verify_pair_file(
    pairs_file: Path,
    export: Path | None = None,
    runtime: str = DEFAULT_RUNTIME,
    policy: ExportPolicy = DEFAULT_POLICY,
    image_root: Path | None = None,
    output: Path | None = None,
    batch: int = 64,
    detect: bool = True,
    save_crops: Path | None = None,
) -> str:
    """Verify every pair of a pair list (labels optional); write the rows if asked; return a one-line summary.

    The list, the image root and the output are checked before the model is loaded.
    """
    from siamese.core.pairs import read_pairs

    if output is not None and output.suffix.lower() not in (".csv", ".json"):
        raise SiameseError(f"{output}: results are written as .csv or .json")
    pairs = read_pairs(pairs_file, labels_required=False)
    image_root = check_pair_images(image_root or image_root_for(pairs_file), (k for p in pairs for k in (p.a, p.b)))
    if output is not None:
        check_writable(output.parent)
    verifier = Verifier(export, runtime, policy=policy, detect=detect, save_crops=save_crops)
    rows = verifier.verify_pairs(pairs, image_root, batch)
    if output:
        write_results(rows, output, verifier.model_record())
    acc = accuracy(rows)
    same = sum(bool(r.same) for r in rows)
    undecided = [r for r in rows if r.undecided]
    several = sum((r.faces_a or 0) > 1 or (r.faces_b or 0) > 1 for r in rows)
    return (
        f"{verifier.folder.describe()}\n{verifier.describe_framing()}\n"
        f"{len(rows)} pairs: {same} same, {len(rows) - same - len(undecided)} different"
        + (f", {len(undecided)} undecided (no face found: {undecided[0].undecided}, ...)" if undecided else "")
        + (
            f"; accuracy {acc:.4f} on the {len(rows) - len(undecided)} decided labelled pairs"
            if acc is not None
            else ""
        )
        + (f"; {several} pairs had an image with several faces (the largest confident one was used)" if several else "")
        + (f"; results in {output}" if output else "")
        + (f"; crops in {save_crops}" if save_crops else "")
    )
