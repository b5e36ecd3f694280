"""Checkpoint -> verified, self-describing artifacts under exports/<name>/.

Each format writes both graphs (`embedding`, `pair`) into a temporary folder; then every file
is hashed into `manifest.json`, every artifact is loaded back in its own runtime (through the
same loader users get, so the manifest check is exercised too) and compared with the eager
model on real LFW test pairs and seeded random images. Only when all agree is the folder
renamed into place; otherwise it is removed and the export fails, naming what disagreed.
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from siamese.artifacts import FORMATS, MANIFEST, METADATA, RUNTIMES, Artifact, ExportFolder, artifact_name
from siamese.compare import TOLERANCES, OutputComparison, compare_outputs
from siamese.data import find_lfw, locate_lfw, random_pairs, sample_pairs
from siamese.deploy import GRAPHS, INPUT_NAMES, OUTPUT_NAMES, graphs_from_checkpoint
from siamese.errors import SiameseError
from siamese.files import sha256_file
from siamese.model import FEATURE_DIM
from siamese.train import git_commit

ONNX_OPSET = 18
ONNX_SINGLE_FILE_LIMIT = 1_800_000_000  # protobuf's hard limit is 2 GiB; keep a margin
DEFAULT_FORMATS = ("onnx", "torchscript", "pt2")


def example_inputs(graph: str, image_size: int, batch: int = 2) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    if graph == "compare":
        return tuple(torch.randn(batch, FEATURE_DIM, generator=g) for _ in INPUT_NAMES[graph])
    return tuple(
        torch.randint(0, 256, (batch, image_size, image_size, 3), dtype=torch.uint8, generator=g)
        for _ in INPUT_NAMES[graph]
    )


def _dynamic_batch(graph: str) -> dict:
    batch = torch.export.Dim("batch", min=1, max=65536)
    return {name: {0: batch} for name in INPUT_NAMES[graph]}


# -- writers: one per format, each (module, graph, path, metadata) -> notes for the metadata --


def write_torchscript(module, graph: str, path: Path, meta: dict) -> dict:
    size = meta["image_size"]
    traced = torch.jit.trace(module, example_inputs(graph, size), check_inputs=[example_inputs(graph, size, 3)])
    torch.jit.save(traced, str(path), _extra_files={METADATA: json.dumps(meta)})
    return {"method": "torch.jit.trace (checked at another batch size)"}


def write_pt2(module, graph: str, path: Path, meta: dict) -> dict:
    program = torch.export.export(
        module, example_inputs(graph, meta["image_size"]), dynamic_shapes=_dynamic_batch(graph)
    )
    torch.export.save(program, str(path), extra_files={METADATA: json.dumps(meta)})
    return {"method": "torch.export.export"}


def write_aoti(module, graph: str, path: Path, meta: dict) -> dict:
    import torch._inductor

    program = torch.export.export(
        module, example_inputs(graph, meta["image_size"]), dynamic_shapes=_dynamic_batch(graph)
    )
    torch._inductor.aoti_compile_and_package(program, package_path=str(path))
    return {"method": "torch._inductor.aoti_compile_and_package"}


def _onnx_proto(module, graph: str, image_size: int):
    """The dynamo exporter PyTorch recommends; the TorchScript-based one if it fails."""
    import onnx

    args = example_inputs(graph, image_size)
    names = {"input_names": INPUT_NAMES[graph], "output_names": OUTPUT_NAMES[graph]}
    registry_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry_log.level
    try:
        # the registry warns once per missing torchvision op, which this model does not use
        registry_log.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                args,
                dynamo=True,
                verbose=False,
                opset_version=ONNX_OPSET,
                dynamic_shapes=_dynamic_batch(graph),
                **names,
            )
        return program.model_proto, "torch.onnx.export(dynamo=True)"
    except Exception as exc:  # the exporter raises many types; the fallback is announced and recorded
        warnings.warn(
            f"dynamo ONNX export failed ({type(exc).__name__}: {exc}); using the TorchScript exporter",
            stacklevel=2,
        )
        buf = io.BytesIO()
        axes = {n: {0: "batch"} for n in INPUT_NAMES[graph] + OUTPUT_NAMES[graph]}
        torch.onnx.export(module, args, buf, dynamo=False, opset_version=ONNX_OPSET, dynamic_axes=axes, **names)
        return onnx.load_from_string(buf.getvalue()), "torch.onnx.export(dynamo=False) fallback"
    finally:
        registry_log.setLevel(level)


def write_onnx(module, graph: str, path: Path, meta: dict) -> dict:
    import onnx

    proto, method = _onnx_proto(module, graph, meta["image_size"])
    meta = {**meta, "onnx_exporter": method}
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value if isinstance(value, str) else json.dumps(value))
    external = proto.ByteSize() > ONNX_SINGLE_FILE_LIMIT
    onnx.save_model(proto, str(path), save_as_external_data=external, location=path.name + ".data")
    onnx.checker.check_model(str(path), full_check=True)
    return {"method": method, "opset": ONNX_OPSET, "external_data": external}


WRITERS = {"onnx": write_onnx, "torchscript": write_torchscript, "pt2": write_pt2, "aoti": write_aoti}


# -- verification inputs --


def verification_inputs(ckpt: dict, n_pairs: int = 32, n_random: int = 8, seed: int = 0) -> dict:
    """Real test pairs of the checkpoint's data set (LFW or synthetic) plus seeded random images."""
    size = ckpt["model_config"]["image_size"]
    a, b, source = _real_test_pairs(ckpt, size, n_pairs, seed)
    ra, rb = random_pairs(n_random, size, seed)
    return {"image_a": np.concatenate([a, ra]), "image_b": np.concatenate([b, rb]), "source": source}


def _real_test_pairs(ckpt: dict, size: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    data = ckpt.get("data", {})
    if data.get("data_set") == "synthetic":
        from siamese.synthetic import make_synthetic

        ds = make_synthetic(image_size=size, seed=data.get("seed", 0))
        rows = torch.randperm(len(ds.test), generator=torch.Generator().manual_seed(seed))[:n]
        images = ds.bank.images.numpy()
        return images[ds.test.a[rows]], images[ds.test.b[rows]], f"{len(rows)} synthetic test pairs"
    pairs_file = Path(data.get("test_pairs", ""))
    if not pairs_file.is_file() and (folder := find_lfw()) is not None:
        pairs_file = locate_lfw(folder).test_pairs or Path("")
    if not pairs_file.is_file():
        empty = np.zeros((0, size, size, 3), np.uint8)
        return empty, empty, "no LFW found: random images only"
    a, b, _ = sample_pairs(pairs_file, size, n, seed)
    return a, b, f"{len(a)} LFW test pairs from {pairs_file.name}"


# -- the export --


@dataclass
class Check:
    artifact: str
    results: list[OutputComparison]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def describe(self) -> str:
        return f"{self.artifact}: " + "; ".join(r.describe() for r in self.results)


def reference_outputs(graphs: dict, inputs: dict) -> dict[str, dict[str, np.ndarray]]:
    a, b = torch.from_numpy(inputs["image_a"]), torch.from_numpy(inputs["image_b"])
    with torch.inference_mode():
        score, same = graphs["pair"](a, b)
        features = graphs["embedding"](torch.cat([a, b]))
    pair = {"score": score.numpy(), "same": same.numpy()}
    # compare(embed(a), embed(b)) must give what pair(a, b) gives
    return {
        "embedding": {"features": features.numpy()},
        "pair": pair,
        "compare": pair,
        "features": features.numpy(),
    }


def verify_folder(folder: Path, formats, reference: dict, inputs: dict, dtype: str) -> list[Check]:
    export = ExportFolder.open(folder)
    checks = []
    runtime_of = {fmt: runtime for runtime, fmt in RUNTIMES.items()}
    for fmt in formats:
        for graph in GRAPHS:
            artifact = Artifact(export, graph, runtime_of[fmt])
            n = len(inputs["image_a"])
            args = {
                "embedding": [np.concatenate([inputs["image_a"], inputs["image_b"]])],
                "pair": [inputs["image_a"], inputs["image_b"]],
                "compare": [reference["features"][:n], reference["features"][n:]],
            }[graph]
            out = artifact(*args)
            checks.append(Check(artifact_name(graph, fmt), compare_outputs(out, reference[graph], TOLERANCES[dtype])))
    return checks


def build_metadata(ckpt: dict, checkpoint: Path, dtype: str) -> dict:
    import onnx

    summary = ckpt.get("summary") or {}
    cfg = ckpt["model_config"]
    return {
        "variant": cfg["variant"],
        "threshold": ckpt["threshold"],
        "higher_is_same": ckpt["higher_is_same"],
        "margin": cfg["margin"],
        "image_size": cfg["image_size"],
        "dtype": dtype,
        "normalization": ckpt["normalization"],
        "input_layout": "NHWC uint8 RGB, resized (no crop) to image_size x image_size",
        "graphs": {g: {"inputs": INPUT_NAMES[g], "outputs": OUTPUT_NAMES[g]} for g in GRAPHS},
        "training": {k: summary.get(k) for k in ("data_set", "split", "accuracy", "auc", "eer", "epochs")},
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": sha256_file(checkpoint),
        "git_commit": git_commit(),
        "export_time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__},
    }


def write_manifest(folder: Path) -> None:
    files = {
        p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.iterdir())
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
) -> tuple[Path, list[Check]]:
    """Write, verify and publish one export folder; raise SiameseError if anything disagrees.

    `graphs` overrides the modules that are exported (tests use it to plant a wrong model);
    the reference is always the checkpoint's own fp32 eager model.
    """
    from siamese.checkpoint import load_checkpoint

    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise SiameseError(f"unknown format(s) {', '.join(sorted(unknown))}; choose from {', '.join(FORMATS)}")
    if dtype == "bf16" and "onnx" in formats:
        raise SiameseError(
            "ONNX opset 18 has no bfloat16 convolution: export bf16 as torchscript/pt2, or fp16 for ONNX"
        )
    ckpt = load_checkpoint(checkpoint)
    variant = ckpt["model_config"]["variant"]
    name = name or f"{ckpt.get('data', {}).get('data_set', 'model')}-{variant}-{dtype}"
    dest = Path(out_root) / name
    if dest.exists() and not force:
        raise SiameseError(f"{dest} exists; pass --force to replace it")
    reference_graphs = graphs_from_checkpoint(ckpt, "fp32")
    graphs = graphs or (reference_graphs if dtype == "fp32" else graphs_from_checkpoint(ckpt, dtype))
    meta = build_metadata(ckpt, Path(checkpoint), dtype)
    inputs = verification_inputs(ckpt, n_pairs)
    meta["verified_on"] = inputs["source"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{name}.partial-"))
    try:
        notes = {}
        for fmt in formats:
            for graph in GRAPHS:
                file = artifact_name(graph, fmt)
                log(f"writing {file}")
                try:
                    notes[file] = WRITERS[fmt](
                        graphs[graph], graph, tmp / file, {**meta, "graph": graph, "format": fmt}
                    )
                except Exception as exc:  # exporters raise many types; name the artifact and the cause
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    raise SiameseError(f"writing {file} failed: {type(exc).__name__}: {first}") from None
        (tmp / METADATA).write_text(json.dumps({**meta, "artifacts": notes}, indent=2) + "\n")
        write_manifest(tmp)
        checks = verify_folder(tmp, formats, reference_outputs(reference_graphs, inputs), inputs, dtype)
        failed = [c for c in checks if not c.passed]
        if failed:
            raise SiameseError(
                f"export of {name} failed verification against the eager model ({inputs['source']}): "
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
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def available_formats() -> list[str]:
    """Every format this machine can write: AOTInductor needs a C++ compiler."""
    return [*DEFAULT_FORMATS, *(["aoti"] if shutil.which("c++") or shutil.which("g++") else [])]


def newest_checkpoints(runs: Path = Path("runs")) -> dict[str, Path]:
    """The most recently written finished checkpoint of each variant under `runs/`."""
    found: dict[str, Path] = {}
    for path in sorted(runs.glob("*/*/checkpoint.pt"), key=lambda p: p.stat().st_mtime, reverse=True):
        variant = path.parent.name
        # summary.json is written after the final checkpoint, which holds the threshold
        if variant not in found and (path.parent / "summary.json").is_file():
            found[variant] = path
    return found
