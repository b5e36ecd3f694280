"""Answer "same person?" with an export folder: one pair, or a whole pair list in batches."""

from __future__ import annotations

import csv
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from siamese.artifacts import MANIFEST, Artifact, ExportFolder
from siamese.errors import SiameseError
from siamese.pairs import Pair
from siamese.preprocess import decode_image


def newest_export(root: Path = Path("exports")) -> Path:
    folders = [p.parent for p in Path(root).glob(f"*/{MANIFEST}")]
    if not folders:
        raise SiameseError(f"no export found under {root}/; run siamese-export, or pass --export DIR")
    return max(folders, key=lambda p: (p / MANIFEST).stat().st_mtime)


class Verifier:
    """The embedding and compare graphs of one export, in one runtime."""

    def __init__(self, export: Path, runtime: str = "onnxruntime", providers: list[str] | None = None):
        self.folder = ExportFolder.open(export)
        self.embedding = Artifact(self.folder, "embedding", runtime, providers)
        self.compare = Artifact(self.folder, "compare", runtime, providers)
        self.threshold = float(self.folder.metadata["threshold"])
        self.variant = self.folder.metadata["variant"]

    def load_images(self, paths: list[Path]) -> np.ndarray:
        size = self.folder.image_size
        with ThreadPoolExecutor() as pool:
            return np.stack(list(pool.map(lambda p: decode_image(p, size), paths)))

    def embed(self, images: np.ndarray, batch: int = 64) -> np.ndarray:
        return np.concatenate([self.embedding(images[i : i + batch])["features"] for i in range(0, len(images), batch)])

    def decide(self, fa: np.ndarray, fb: np.ndarray, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        outs = [self.compare(fa[i : i + batch], fb[i : i + batch]) for i in range(0, len(fa), batch)]
        return np.concatenate([o["score"] for o in outs]), np.concatenate([o["same"] for o in outs]).astype(bool)

    def verify_files(self, a: Path, b: Path) -> dict:
        features = self.embed(self.load_images([Path(a), Path(b)]))
        score, same = self.decide(features[:1], features[1:])
        return {
            "same": bool(same[0]),
            "score": float(score[0]),
            "threshold": self.threshold,
            "variant": self.variant,
        }

    def verify_pairs(self, pairs: list[Pair], image_root: Path, batch: int = 64) -> list[dict]:
        """Every distinct image is decoded and embedded once, however many pairs it is in."""
        keys = sorted({k for p in pairs for k in (p.a, p.b)})
        row = {k: i for i, k in enumerate(keys)}
        features = np.concatenate(
            [
                self.embed(self.load_images([image_root / k for k in keys[i : i + batch]]), batch)
                for i in range(0, len(keys), batch)
            ]
        )
        ia = np.array([row[p.a] for p in pairs])
        ib = np.array([row[p.b] for p in pairs])
        score, same = self.decide(features[ia], features[ib])
        return [
            {
                "image_a": p.a,
                "image_b": p.b,
                "score": float(s),
                "same": bool(d),
                "label": None if p.same < 0 else p.same,
            }
            for p, s, d in zip(pairs, score, same, strict=True)
        ]


def accuracy(rows: list[dict]) -> float | None:
    labelled = [r for r in rows if r["label"] is not None]
    if not labelled:
        return None
    return sum(r["same"] == bool(r["label"]) for r in labelled) / len(labelled)


def write_results(rows: list[dict], path: Path) -> None:
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(rows, indent=1) + "\n")
        return
    if path.suffix.lower() != ".csv":
        raise SiameseError(f"{path}: results are written as .csv or .json")
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(
            f, fieldnames=list(rows[0]) if rows else ["image_a", "image_b", "score", "same", "label"]
        )
        writer.writeheader()
        writer.writerows(rows)
