"""Checkpoint -> verified, self-describing artifacts under exports/<name>/.

Each format writes both graphs (`embedding`, `pair`) into a temporary folder; then every file
is hashed into `manifest.json`, every artifact is loaded back in its own runtime (through the
same loader users get, so the manifest check is exercised too) and compared with the eager
model on real LFW test pairs and seeded random images. Only when all agree is the folder
renamed into place; otherwise it is removed and the export fails, naming what disagreed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from siamese.artifacts.checkpoint import Checkpoint, load_checkpoint, newest_checkpoints
from siamese.artifacts.folder import (
    MANIFEST,
    METADATA,
    WEIGHTS,
    ExportFolder,
    ExportPolicy,
    path_component,
    set_default_export,
    sign_manifest,
)
from siamese.artifacts.formats import GRAPHS, check_dtype, formats_for_all, get_format
from siamese.artifacts.graphs import INPUT_NAMES, OUTPUT_NAMES, graphs_from_checkpoint, save_weights
from siamese.artifacts.records import TrainedOn
from siamese.backends.triton.repository import REPOSITORY, ServingConfig, model_config_pb2, write_repository
from siamese.core.errors import SiameseError, first_line
from siamese.core.files import check_writable, exclusive_lock, sha256_file
from siamese.core.provenance import git_commit, utc_now
from siamese.data.lfw import default_pairs, sample_pairs
from siamese.parity.compare import ParityResult
from siamese.parity.inputs import ParityInputs, check_compare_graph, check_runner, with_random_pairs

DEFAULT_FORMATS = ("onnx", "torchscript", "pt2")
CALIBRATION_IMAGES = 256


# -- verification inputs --


def verification_inputs(ckpt: Checkpoint, n_pairs: int = 32, n_random: int = 8, seed: int = 0) -> ParityInputs:
    """Real labelled test pairs of the checkpoint's data set (LFW or synthetic) plus seeded random images."""
    size = ckpt.model_config.image_size
    a, b, labels, source = _real_pairs(ckpt, "test", size, n_pairs, seed)
    return with_random_pairs(a, b, labels, source, n_random, size, seed)


def calibration_images(ckpt: Checkpoint, n_images: int = CALIBRATION_IMAGES, seed: int = 0) -> tuple[np.ndarray, str]:
    """(N, S, S, 3) uint8 images of training pairs, and where they come from: quantization
    never sees a test identity."""
    a, b, _, source = _real_pairs(ckpt, "train", ckpt.model_config.image_size, n_images // 2, seed)
    if not len(a):
        raise SiameseError(f"INT8 calibration needs the training images of the checkpoint's data set ({source})")
    return np.concatenate([a, b]), f"{2 * len(a)} images of {source}"


def _real_pairs(ckpt: Checkpoint, split: str, size: int, n: int, seed: int):
    """n pairs of the data set's `split` (train or test): image_a, image_b, labels and what they are."""
    if ckpt.data_set == "synthetic":
        from siamese.data.synthetic import make_synthetic

        ds = make_synthetic(image_size=size, seed=ckpt.data.get("seed", 0))
        pairs = ds.train if split == "train" else ds.test
        rows = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed))[:n]
        images = ds.bank.images.numpy()
        labels = pairs.same[rows].numpy().astype(np.int8)
        return images[pairs.a[rows]], images[pairs.b[rows]], labels, f"{len(rows)} synthetic {split} pairs"
    pairs_file = Path(ckpt.data.get(f"{split}_pairs", ""))
    if not pairs_file.is_file():
        pairs_file = default_pairs(split) or Path("")
    if not pairs_file.is_file():
        empty = np.zeros((0, size, size, 3), np.uint8)
        return (
            empty,
            empty,
            np.zeros(0, np.int8),
            "no LFW pair file (recorded in the checkpoint, or $SIAMESE_LFW): random images only",
        )
    a, b, labels = sample_pairs(pairs_file, size, n, seed, crop=ckpt.input_framing.crop)
    return a, b, labels, f"{len(a)} LFW {split} pairs from {pairs_file.name}"


# -- the export --


@dataclass
class Check:
    artifact: str  # a format's graphs, as its runner runs them
    parity: ParityResult

    @property
    def passed(self) -> bool:
        return self.parity.passed

    def describe(self) -> str:
        return f"{self.artifact}: " + ("; ".join(self.parity.failures()) or self.parity.describe())


def reference_outputs(graphs: dict, inputs: ParityInputs) -> dict[str, np.ndarray]:
    """The checkpoint's own fp32 eager graphs on the inputs: features, score and same."""
    a, b = torch.from_numpy(inputs.image_a), torch.from_numpy(inputs.image_b)
    with torch.inference_mode():
        score, same = graphs["pair"](a, b)
        features = graphs["embedding"](torch.cat([a, b]))
    return {"features": features.numpy(), "score": score.numpy(), "same": same.numpy()}


def verify_folder(folder: Path, formats, reference: dict, inputs: ParityInputs) -> list[Check]:
    """Read every format back with its own runner (manifest-checked) and compare it with the reference."""
    from siamese.backends import create

    export = ExportFolder.open(folder, ExportPolicy(trust_code=True))  # the files this process has just written
    meta = export.metadata
    checks = []
    for fmt in formats:
        runner = create(get_format(fmt).verified_by)
        try:
            runner.load(export, GRAPHS)
            graphs = (runner, inputs, reference, meta.threshold, meta.dtype)
            distance = not meta.higher_is_same
            checks.append(Check(f"{fmt} embedding+pair", check_runner(*graphs, score_is_distance=distance)))
            checks.append(Check(f"{fmt} compare", check_compare_graph(*graphs, score_is_distance=distance)))
        finally:
            runner.close()
    return checks


def build_metadata(ckpt: Checkpoint, checkpoint: Path, dtype: str) -> dict:
    import onnx

    return {
        "variant": ckpt.variant,
        "head": ckpt.model_config.head,
        "threshold": ckpt.threshold,
        "higher_is_same": ckpt.higher_is_same,
        "margin": ckpt.model_config.margin,
        "image_size": ckpt.model_config.image_size,
        "dtype": dtype,
        "normalization": ckpt.normalization.to_dict(),
        "framing": ckpt.client_framing.to_dict(),
        "input_layout": "NHWC uint8 RGB, image_size x image_size, framed as 'framing' says, then resized",
        "graphs": {g: {"inputs": INPUT_NAMES[g], "outputs": OUTPUT_NAMES[g]} for g in GRAPHS},
        "training": TrainedOn.of(ckpt.summary, ckpt.data_set).to_dict(),
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": sha256_file(checkpoint),
        "git_commit": git_commit(),
        "export_time": utc_now(),
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__},
    }


def write_manifest(folder: Path) -> None:
    """Size and sha256 of every file under `folder`, by its path relative to it ('/'-separated)."""
    files = {
        p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    (folder / MANIFEST).write_text(json.dumps({"format_version": 1, "files": files}, indent=2) + "\n")


def export_checkpoint(
    checkpoint: Path,
    out_root: Path = Path("exports"),
    name: str | None = None,
    formats=DEFAULT_FORMATS,
    dtype: str = "fp32",
    force: bool = False,
    n_pairs: int = 32,
    graphs: dict | None = None,
    log=print,
    key: bytes | None = None,
    serving: ServingConfig | None = None,
    untrained: bool = False,
) -> tuple[Path, list[Check]]:
    """Write, verify and publish one export folder; raise SiameseError if anything disagrees.

    A checkpoint that never finished training (no summary: random or half-trained weights) is
    exported only with `untrained`, and its metadata then says so to every reader.

    `graphs` overrides the modules that are exported (tests use it to plant a wrong model);
    the reference is always the checkpoint's own fp32 eager model, whose weights are also
    written, as tensors only, to `weights.safetensors`. With `key`, the manifest is signed.
    Format "triton" adds a Triton model repository (`serving`) built on the ONNX graphs.
    """
    triton = "triton" in formats
    formats = list(dict.fromkeys([f for f in formats if f != "triton"] + (["onnx"] if triton else [])))
    for fmt in formats:
        get_format(fmt)  # an unknown name: said now
    check_dtype(formats, dtype)
    if triton:
        serving = serving or ServingConfig()
        model_config_pb2()  # tritonclient missing: said now, not after minutes of exporting
    if name is not None:
        path_component(name, "export name")
    ckpt = load_checkpoint(checkpoint)
    if ckpt.summary is None and not untrained:
        raise SiameseError(
            f"{checkpoint}: holds weights that never finished training (no final evaluation); "
            "pass --untrained to export them anyway (every answer from them will say so)"
        )
    name = name or path_component(f"{ckpt.data_set}-{ckpt.model_config.name}-{dtype}", f"{checkpoint}: export name")
    dest = Path(out_root) / name
    # one writer per export name: a second run fails at once and destroys nothing
    with exclusive_lock(dest.with_name(f".{name}.lock"), f"export {dest}"):
        recover_interrupted(dest)
        if dest.exists() and not force:
            raise SiameseError(f"{dest} exists; pass --force to replace it")
        if dest.is_symlink() or (dest.exists() and not (dest / MANIFEST).is_file()):
            raise SiameseError(f"{dest} is not an export folder: --force only replaces an export")
        reference_graphs = graphs_from_checkpoint(ckpt, "fp32")
        graphs = graphs or (reference_graphs if dtype in ("fp32", "int8") else graphs_from_checkpoint(ckpt, dtype))
        meta = build_metadata(ckpt, Path(checkpoint), dtype)
        # INT8 activation ranges are calibrated on faces: noise images fall outside them by design
        inputs = verification_inputs(ckpt, n_pairs, n_random=0 if dtype == "int8" else 8)
        meta["verified_on"] = inputs.source
        calibration = None
        if dtype == "int8":
            calibration, meta["int8_calibration"] = calibration_images(ckpt)
        check_writable(dest.parent)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{name}.partial-"))
        try:
            notes = {}
            save_weights(ckpt.model, ckpt.model_config, tmp / WEIGHTS)
            for fmt in formats:
                for graph in GRAPHS:
                    file = get_format(fmt).artifact(graph)
                    log(f"writing {file}")
                    try:
                        notes[file] = get_format(fmt).write(
                            graphs[graph], graph, tmp / file, {**meta, "graph": graph, "format": fmt}, calibration
                        )
                    except Exception as exc:  # exporters raise many types; name the artifact and the cause
                        raise SiameseError(f"writing {file} failed: {first_line(exc, with_type=True)}") from None
            (tmp / METADATA).write_text(json.dumps({**meta, "artifacts": notes}, indent=2) + "\n")
            if triton:
                log(f"writing the Triton model repository {REPOSITORY}/")
                write_repository(tmp, serving)
            write_manifest(tmp)
            if key is not None:
                sign_manifest(tmp, key)
            checks = verify_folder(tmp, formats, reference_outputs(reference_graphs, inputs), inputs)
            failed = [c for c in checks if not c.passed]
            if failed:
                raise SiameseError(
                    f"export of {name} failed verification against the eager model ({inputs.source}): "
                    + " | ".join(c.describe() for c in failed)
                )
            tmp.chmod(0o755)  # mkdtemp made it private
            # with --force the old export stays whole until the new one has taken its name
            old = dest.with_name(f".{name}.replaced-{tmp.name.rsplit('-', 1)[-1]}") if dest.exists() else None
            if old is not None:
                dest.rename(old)
            tmp.rename(dest)
            if old is not None:
                shutil.rmtree(old)
            return dest, checks
        except OSError as exc:  # a full or read-only disk while writing: the partial folder goes, the old export stays
            raise SiameseError(f"cannot write the export {dest}: {exc.strerror or exc}") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def recover_interrupted(dest: Path) -> None:
    """Undo what a killed export of `dest` left behind: its partial folders, and a replaced
    export that was moved aside but not yet removed (restored if `dest` itself is gone)."""
    for leftover in dest.parent.glob(f".{dest.name}.partial-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    for old in sorted(dest.parent.glob(f".{dest.name}.replaced-*")):
        if not dest.exists() and (old / MANIFEST).is_file():
            old.rename(dest)
        else:
            shutil.rmtree(old, ignore_errors=True)


def resolve_formats(requested, dtype: str, log=print) -> list[str]:
    """The formats behind --format options: `all` is every format this machine can write for
    `dtype` (siamese.artifacts.formats says which), each one left out named."""
    if "all" not in requested:
        return list(dict.fromkeys(requested))
    formats, left_out = formats_for_all(dtype)
    for line in left_out:
        log(f"--format all leaves out {line}")
    return formats + (["triton"] if "triton" in requested else [])


def export_runs(
    checkpoints=(),
    runs: Path = Path("runs"),
    formats=("all",),
    dtype: str = "fp32",
    out_root: Path = Path("exports"),
    name: str | None = None,
    force: bool = False,
    n_pairs: int = 32,
    log=print,
    key: bytes | None = None,
    serving: ServingConfig | None = None,
    untrained: bool = False,
) -> list[tuple[Path, list[Check]]]:
    """Export the given checkpoints, or the newest finished run of each variant under `runs`;
    then, of those in fp32 with trained weights, the most accurate becomes the default export
    (what reading commands use without --export)."""
    formats = resolve_formats(formats, dtype, log)
    checkpoints = list(checkpoints) or list(newest_checkpoints(runs).values())
    if not checkpoints:
        raise SiameseError(f"no finished training run under {runs}/; run siamese-train or pass --checkpoint")
    if name and len(checkpoints) > 1:
        raise SiameseError("--name needs a single --checkpoint")
    check_writable(out_root)
    exported = [
        export_checkpoint(
            c, out_root, name, formats, dtype, force, n_pairs, log=log, key=key, serving=serving, untrained=untrained
        )
        for c in checkpoints
    ]
    trained = [(t.accuracy or 0.0, dest) for dest, _ in exported if (t := written_training(dest)).trained]
    if dtype == "fp32" and trained:
        default = set_default_export(out_root, max(trained)[1].name)
        log(f"default export (used without --export): {default}")
    return exported


def written_training(dest: Path) -> TrainedOn:
    """The TrainedOn record of an export this process has just written."""
    meta = json.loads((dest / METADATA).read_text())
    return TrainedOn.from_dict(meta["training"], str(dest / METADATA))
