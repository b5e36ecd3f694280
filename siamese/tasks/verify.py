"""Answer "same person?" with an export folder: one pair, or a whole pair list in batches."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from siamese.artifacts.folder import DEFAULT_POLICY, ExportFolder, ExportPolicy, default_export
from siamese.backends import create
from siamese.core.errors import SiameseError
from siamese.core.files import atomic_write, check_writable, write_json
from siamese.core.pairs import Pair
from siamese.core.preprocess import DECODE_WORKERS, check_pair_images, decode_image, image_file
from siamese.core.spec import score_name

DEFAULT_RUNTIME = "ort-cpu"


@dataclass(frozen=True)
class Verdict:
    """One pair's answer: what `siamese-verify` prints and writes (a row of --output)."""

    image_a: str
    image_b: str
    score: float  # a probability (bce) or a distance (contrastive)
    same: bool  # at the export's threshold
    label: int | None = None  # the pair list's label, where it has one

    @property
    def correct(self) -> bool | None:
        return None if self.label is None else self.same == bool(self.label)

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
    ):
        self.folder = ExportFolder.open(export or default_export(), policy)
        self.runner = create(runtime, threads)
        reason = self.runner.unavailable(self.folder)
        if reason:
            raise SiameseError(f"runtime {runtime} cannot run here: {reason}")
        self.runner.load(self.folder, ("embedding", "compare"))
        self.metadata = self.folder.metadata

    @property
    def threshold(self) -> float:
        return self.metadata.threshold

    def describe(self, score: float, same: bool) -> str:
        relation = ">" if self.metadata.higher_is_same else "<"
        return (
            f"{'same' if same else 'different'} person: {score_name(self.metadata.variant)} {score:.4f} "
            f"(same if {relation} {self.threshold:.4f})"
        )

    def load_images(self, paths: list[Path]) -> np.ndarray:
        size = self.folder.image_size
        with ThreadPoolExecutor(max_workers=DECODE_WORKERS) as pool:
            return np.stack(list(pool.map(lambda p: decode_image(p, size), paths)))

    def decoded(self, batches: list[list[Path]]) -> Iterator[np.ndarray]:
        """Each batch of images decoded while the runtime works on the one before it."""
        with ThreadPoolExecutor(max_workers=1) as ahead:
            pending = [ahead.submit(self.load_images, paths) for paths in batches[:1]]
            for paths in [*batches[1:], None]:
                images = pending.pop().result()
                if paths is not None:
                    pending.append(ahead.submit(self.load_images, paths))
                yield images

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
        features = self.embed(self.load_images([Path(a), Path(b)]))
        score, same = self.decide(features, [0], [1])
        return Verdict(str(a), str(b), float(score[0]), bool(same[0]))

    def verify_pairs(self, pairs: list[Pair], image_root: Path, batch: int = 64) -> list[Verdict]:
        """Every distinct image is decoded and embedded once, however many pairs it is in."""
        keys = sorted({k for p in pairs for k in (p.a, p.b)})
        row = {k: i for i, k in enumerate(keys)}
        batches = [[image_file(image_root, k) for k in keys[i : i + batch]] for i in range(0, len(keys), batch)]
        features = np.concatenate([self.embed(images, batch) for images in self.decoded(batches)])
        ia = np.array([row[p.a] for p in pairs])
        ib = np.array([row[p.b] for p in pairs])
        score, same = self.decide(features, ia, ib)
        return [
            Verdict(p.a, p.b, float(s), bool(d), None if p.same < 0 else p.same)
            for p, s, d in zip(pairs, score, same, strict=True)
        ]


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
    verifier = Verifier(export, runtime, policy=policy)
    rows = verifier.verify_pairs(pairs, image_root, batch)
    if output:
        write_results(rows, output, verifier.folder.model_record())
    acc = accuracy(rows)
    same = sum(r.same for r in rows)
    return (
        f"{verifier.folder.describe()}\n{len(rows)} pairs: {same} same, {len(rows) - same} different"
        + (f"; accuracy {acc:.4f} on the labels" if acc is not None else "")
        + (f"; results in {output}" if output else "")
    )
