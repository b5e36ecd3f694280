"""Checkpoints: one typed record, written atomically, read without ever running pickled code.

On disk a checkpoint is a plain dict of tensors and primitives (`Checkpoint.to_dict`), so
`torch.load(weights_only=True)` reads all of it; a file carrying arbitrary pickled objects
is refused with a clear message. `Checkpoint.from_dict` is the one place that reads the
keys, so a missing or mistyped key is named once, with the file.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from siamese.artifacts.records import EpochStats, TrainingSummary
from siamese.core.errors import SiameseError, first_line
from siamese.core.files import atomic_write
from siamese.core.model import ModelConfig, SiameseNet
from siamese.core.preprocess import NORMALIZATION, Normalization
from siamese.core.records import require
from siamese.core.spec import SPEC_IMAGE_SIZE, higher_is_same
from siamese.detect.framing import LFW_LANDMARKS, Framing

FORMAT = "siamese-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    model: dict  # the SiameseNet state dict
    model_config: ModelConfig
    normalization: Normalization = NORMALIZATION
    epoch: int = 0
    config: dict = field(default_factory=dict)  # the TrainConfig that produced it, as a dict
    optimizer: dict | None = None
    threshold: float | None = None  # decision threshold on the score; None until evaluated
    rng: dict | None = None
    data: dict = field(default_factory=dict)  # data set description: data_set, train/test pair files
    history: list[EpochStats] = field(default_factory=list)  # one record per epoch
    summary: TrainingSummary | None = None  # the final evaluation, once training finished
    framing: Framing | None = None  # what the network's input shows; None: its data set's default
    format_version: int = FORMAT_VERSION

    @property
    def variant(self) -> str:
        return self.model_config.variant

    @property
    def higher_is_same(self) -> bool:
        return higher_is_same(self.model_config.variant)

    @property
    def data_set(self) -> str:
        return str(self.data.get("data_set", "model"))

    @property
    def input_framing(self) -> Framing:
        """How an image becomes this network's input (checkpoints before framing: their data set's)."""
        return self.framing or Framing.for_data_set(self.data_set, aligned=False)

    @property
    def client_framing(self) -> Framing:
        """What a client of this model's exports does to a photo: the framing it trained with, and,
        for LFW runs recorded before landmarks (2026-12-06), LFW's landmarks too."""
        framing = self.input_framing
        if framing.kind == "detected" and framing.landmarks is None and self.data_set == "lfw":
            return replace(framing, landmarks=LFW_LANDMARKS)
        return framing

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": self.format_version,
            "model": self.model,
            "optimizer": self.optimizer,
            "epoch": self.epoch,
            "config": self.config,
            "model_config": self.model_config.to_dict(),
            "normalization": self.normalization.to_dict(),
            "threshold": self.threshold,
            "higher_is_same": self.higher_is_same,
            "rng": self.rng,
            "data": self.data,
            "history": [h.to_dict() for h in self.history],
            "summary": None if self.summary is None else self.summary.to_dict(),
            "framing": None if self.framing is None else self.framing.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict, source: str = "checkpoint") -> Checkpoint:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise SiameseError(f"{source}: not a siamese checkpoint")
        version = d.get("format_version", 0)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise SiameseError(
                f"{source}: checkpoint format {version} is newer than this version reads ({FORMAT_VERSION}); "
                "upgrade siamese-verify"
            )
        try:
            model_config = ModelConfig(**require(d, "model_config", dict, source))
            normalization = Normalization.from_dict(require(d, "normalization", dict, source))
        except (TypeError, ValueError, KeyError) as exc:
            raise SiameseError(f"{source}: invalid model_config or normalization ({exc})") from None
        epoch = require(d, "epoch", int, source, 0)
        if epoch < 0:
            raise SiameseError(f"{source}: key 'epoch' is negative ({epoch})")
        data = require(d, "data", dict, source, {})
        require(data, "data_set", str, f"{source}: data", "model")
        summary = require(d, "summary", dict, source, None)
        threshold = require(d, "threshold", float, source, None)
        framing = require(d, "framing", dict, source, None)
        return cls(
            model=require(d, "model", dict, source),
            model_config=model_config,
            normalization=normalization,
            epoch=epoch,
            config=require(d, "config", dict, source, {}),
            optimizer=require(d, "optimizer", dict, source, None),
            threshold=None if threshold is None else float(threshold),
            rng=require(d, "rng", dict, source, None),
            data=data,
            history=[
                EpochStats.from_dict(h, f"{source}: history[{i}]")
                for i, h in enumerate(require(d, "history", list, source, []))
            ],
            summary=None if summary is None else TrainingSummary.from_dict(summary, f"{source}: summary"),
            framing=None if framing is None else Framing.from_dict(framing, source),
            format_version=version,
        )

    def build_model(self) -> SiameseNet:
        """The network with these weights, in eval mode."""
        model = SiameseNet.from_config(self.model_config)
        try:
            model.load_state_dict(self.model)
        except RuntimeError as exc:
            raise SiameseError(
                f"checkpoint weights do not fit a {self.model_config} network: {first_line(exc)}"
            ) from None
        return model.eval()


class _KeepWriteError:
    """A file for torch.save that keeps the OSError of a failed write: torch swallows it and
    fails later with 'unexpected pos', which would hide a full disk."""

    def __init__(self, file):
        self.file, self.error = file, None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.file.flush()


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            out = _KeepWriteError(f)
            try:
                torch.save(checkpoint.to_dict(), out)
            except RuntimeError:
                if out.error is not None:
                    raise out.error from None  # atomic_write: "cannot write PATH: No space left on device"
                raise

    atomic_write(path, write)


def load_checkpoint(path: Path, map_location="cpu") -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise SiameseError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        raise SiameseError(f"{path}: not a readable checkpoint (not a torch.save archive)")
    try:
        with open(path, "rb") as f:
            # torch.load does not check the archive's CRC-32s: damaged bytes would load as weights
            damaged = zipfile.ZipFile(f).testzip()
            if damaged is not None:
                raise SiameseError(
                    f"{path}: damaged: {damaged} fails its CRC-32 check (a disk or copy error); "
                    "use another copy, or train again"
                )
            f.seek(0)
            raw = torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        what = f"it names {found.group(1)}" if found else "it holds objects that only unpickling code could build"
        raise SiameseError(f"{path}: refused to load: {what}; checkpoints hold only tensors and plain values") from None
    except (RuntimeError, EOFError, OSError, ValueError, TypeError, KeyError, IndexError, zipfile.BadZipFile) as exc:
        # what a damaged or crafted archive raises: a negative storage size is a TypeError
        raise SiameseError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {first_line(exc)})") from None
    return Checkpoint.from_dict(raw, str(path))


def newest_checkpoints(runs: Path = Path("runs")) -> dict[str, Path]:
    """The most recently written finished checkpoint of each model (variant and head) under `runs/`."""
    found: dict[str, Path] = {}
    for path in sorted(Path(runs).glob("*/*/checkpoint.pt"), key=lambda p: p.stat().st_mtime, reverse=True):
        variant = path.parent.name
        # summary.json is written after the final checkpoint, which holds the threshold
        if variant not in found and (path.parent / "summary.json").is_file():
            found[variant] = path
    return found


def untrained_checkpoint(
    path: Path, variant: str, image_size: int = SPEC_IMAGE_SIZE, seed: int = 0, data: dict | None = None
) -> Path:
    """A checkpoint of randomly initialised weights, for benchmarks and tests, never for answers.

    BatchNorm statistics come from a few random batches so outputs are not degenerate; the
    threshold is the median score of random pairs. It has no summary: it was never evaluated.
    """
    torch.manual_seed(seed)
    model = SiameseNet(variant, image_size)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, image_size, image_size), torch.randn(8, 3, image_size, image_size))
        model.eval()
        noise = [torch.randn(16, 3, image_size, image_size) for _ in range(2)]
        threshold = float(model.score(model(*noise)).median())
    checkpoint = Checkpoint(
        model=model.state_dict(),
        model_config=model.config,
        config={"variant": variant, "image_size": image_size, "epochs": 0, "seed": seed},
        threshold=threshold,
        data=data or {"data_set": "untrained"},
    )
    save_checkpoint(path, checkpoint)
    return path
