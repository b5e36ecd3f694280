"""Checkpoint -> verified, self-describing artifacts under exports/<name>/.

Each format writes both graphs (`embedding`, `pair`) into a temporary folder; then every file
is hashed into `manifest.json`, every artifact is loaded back in its own runtime (through the
same loader users get, so the manifest check is exercised too) and compared with the eager
model on real LFW test pairs and seeded random images. Only when all agree is the folder
renamed into place; otherwise it is removed and the export fails, naming what disagreed.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.util
import io
import json
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from siamese.artifacts.checkpoint import Checkpoint, load_checkpoint, newest_checkpoints
from siamese.artifacts.folder import (
    FORMATS,
    GRAPHS,
    MANIFEST,
    METADATA,
    WEIGHTS,
    ExportFolder,
    ExportPolicy,
    artifact_name,
    path_component,
    sign_manifest,
)
from siamese.artifacts.graphs import INPUT_NAMES, OUTPUT_NAMES, graphs_from_checkpoint, save_weights
from siamese.backends.onnx.quantize import calibration_feeds, quantize_onnx, quantize_openvino
from siamese.backends.triton.repository import REPOSITORY, ServingConfig, model_config_pb2, write_repository
from siamese.core.errors import SiameseError, quiet_logger
from siamese.core.files import check_writable, sha256_file
from siamese.core.model import FEATURE_DIM
from siamese.core.provenance import cxx_compiler, git_commit
from siamese.data.lfw import default_pairs, sample_pairs
from siamese.parity.compare import ParityResult
from siamese.parity.inputs import ParityInputs, check_compare_graph, check_runner, with_random_pairs

ONNX_OPSET = 18
ONNX_WEIGHTS = (
    "onnx.data"  # the one weights file of every ONNX graph of an export (each graph alone is under 2 GiB anyway)
)
DEFAULT_FORMATS = ("onnx", "torchscript", "pt2")
CALIBRATION_IMAGES = 256


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
    try:
        # the registry warns once per missing torchvision op, which this model does not use
        with quiet_logger("torch.onnx._internal.exporter._registration"), warnings.catch_warnings():
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


def write_onnx(module, graph: str, path: Path, meta: dict) -> dict:
    proto, method = _onnx_proto(module, graph, meta["image_size"])
    return {"method": method, "opset": ONNX_OPSET, **save_onnx(proto, path, meta)}


def write_onnx_int8(module, graph: str, path: Path, meta: dict, calibration: np.ndarray) -> dict:
    """The fp32 graph, statically quantized to INT8 with `calibration` images (training identities)."""
    import onnx

    if graph == "compare":  # features in, one small head: nothing for INT8 to speed up
        return write_onnx(module, graph, path, meta)
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / path.name, Path(tmp) / f"int8-{path.name}"
        notes = write_onnx(module, graph, fp32, meta)
        notes |= quantize_onnx(fp32, int8, calibration_feeds(INPUT_NAMES[graph], calibration))
        proto = onnx.load(str(int8))
    del proto.metadata_props[:]
    return {**notes, **save_onnx(proto, path, meta)}


def write_openvino(module, graph: str, path: Path, meta: dict, calibration: np.ndarray | None = None) -> dict:
    """An OpenVINO IR converted from the graph's ONNX export; with `calibration` images, NNCF's
    INT8 quantization of it (the compare head stays fp32: nothing there for INT8 to speed up)."""
    import openvino as ov

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / f"{graph}.onnx"
        notes = {"converted_from": write_onnx(module, graph, source, meta)["method"]}
        model = ov.Core().read_model(str(source))
        if calibration is not None and graph != "compare":
            model, quantized = quantize_openvino(model, calibration_feeds(INPUT_NAMES[graph], calibration))
            notes |= quantized
        model.set_rt_info(json.dumps(meta), "siamese_metadata")
        ov.save_model(model, str(path), compress_to_fp16=False)
    return {"method": f"openvino {ov.__version__} IR", **notes}


def save_onnx(proto, path: Path, meta: dict) -> dict:
    """Label `proto` with the metadata, keep its weights in the export's shared file, save and check it."""
    import onnx

    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value if isinstance(value, str) else json.dumps(value))
    shared, added = store_in_weights_file(proto, path.parent / ONNX_WEIGHTS)
    onnx.save_model(proto, str(path))
    onnx.checker.check_model(str(path), full_check=True)
    return {"weights_file": ONNX_WEIGHTS, "tensors_shared": shared, "tensors_added": added}


def store_in_weights_file(proto, data_file: Path, min_bytes: int = 1024) -> tuple[int, int]:
    """Point the large initializers of `proto` at `data_file`, which every ONNX graph of an
    export shares: a tensor whose bytes some graph already stored there is referenced, not
    written again, so the pair graph adds nothing to the embedding graph's
    weights. Returns (tensors shared, tensors appended)."""
    from onnx import TensorProto, numpy_helper
    from onnx.external_data_helper import set_external_data

    shared = added = 0
    with open(data_file, "ab+") as data:
        stored = {hashlib.sha256(_read_at(data, *where)).digest(): where for where in _stored_tensors(data_file)}
        for tensor in proto.graph.initializer:
            raw = numpy_helper.to_array(tensor).tobytes()
            if len(raw) < min_bytes:
                continue
            digest = hashlib.sha256(raw).digest()
            where = stored.get(digest)
            if where is not None:
                shared += 1
            else:
                data.seek(0, io.SEEK_END)
                where = (-data.tell() % 4096 + data.tell(), len(raw))  # page-aligned, so runtimes can map it
                data.write(b"\0" * (where[0] - data.tell()) + raw)
                stored[digest] = where
                added += 1
            for field in ("float_data", "int32_data", "int64_data", "double_data"):
                tensor.ClearField(field)
            tensor.raw_data = raw  # set_external_data insists on it; then the bytes live only in the file
            set_external_data(tensor, data_file.name, offset=where[0], length=where[1])
            tensor.ClearField("raw_data")
            tensor.data_location = TensorProto.EXTERNAL
    return shared, added


def _stored_tensors(data_file: Path) -> set[tuple[int, int]]:
    """(offset, length) of the tensors that the ONNX files beside `data_file` keep in it."""
    import onnx

    stored = set()
    for model in sorted(data_file.parent.glob("*.onnx")):
        for tensor in onnx.load(str(model), load_external_data=False).graph.initializer:
            info = {e.key: e.value for e in tensor.external_data}
            if info.get("location") == data_file.name:
                stored.add((int(info["offset"]), int(info["length"])))
    return stored


def _read_at(file, offset: int, length: int) -> bytes:
    file.seek(offset)
    return file.read(length)


WRITERS = {
    "onnx": write_onnx,
    "torchscript": write_torchscript,
    "pt2": write_pt2,
    "aoti": write_aoti,
    "openvino": write_openvino,
}


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
    a, b, labels = sample_pairs(pairs_file, size, n, seed)
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
    from siamese.backends import FORMAT_RUNNERS, create

    export = ExportFolder.open(folder, ExportPolicy(trust_code=True))  # the files this process has just written
    meta = export.metadata
    checks = []
    for fmt in formats:
        runner = create(FORMAT_RUNNERS[fmt])
        try:
            runner.load(export, GRAPHS)
            checks.append(
                Check(f"{fmt} embedding+pair", check_runner(runner, inputs, reference, meta.threshold, meta.dtype))
            )
            checks.append(
                Check(f"{fmt} compare", check_compare_graph(runner, inputs, reference, meta.threshold, meta.dtype))
            )
        finally:
            runner.close()
    return checks


def build_metadata(ckpt: Checkpoint, checkpoint: Path, dtype: str) -> dict:
    import onnx

    summary = ckpt.summary or {}
    return {
        "variant": ckpt.variant,
        "head": ckpt.model_config.head,
        "threshold": ckpt.threshold,
        "higher_is_same": ckpt.higher_is_same,
        "margin": ckpt.model_config.margin,
        "image_size": ckpt.model_config.image_size,
        "dtype": dtype,
        "normalization": ckpt.normalization.to_dict(),
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
) -> tuple[Path, list[Check]]:
    """Write, verify and publish one export folder; raise SiameseError if anything disagrees.

    `graphs` overrides the modules that are exported (tests use it to plant a wrong model);
    the reference is always the checkpoint's own fp32 eager model, whose weights are also
    written, as tensors only, to `weights.safetensors`. With `key`, the manifest is signed.
    Format "triton" adds a Triton model repository (`serving`) built on the ONNX graphs.
    """
    unknown = set(formats) - {*FORMATS, "triton"}
    if unknown:
        raise SiameseError(f"unknown format(s) {', '.join(sorted(unknown))}; choose from {', '.join(FORMATS)}, triton")
    triton = "triton" in formats
    formats = list(dict.fromkeys([f for f in formats if f != "triton"] + (["onnx"] if triton else [])))
    if triton:
        serving = serving or ServingConfig()
        model_config_pb2()  # tritonclient missing: said now, not after minutes of exporting
    if dtype == "bf16" and "onnx" in formats:
        raise SiameseError(
            "ONNX opset 18 has no bfloat16 convolution: export bf16 as torchscript/pt2, or fp16 for ONNX"
        )
    if dtype == "int8" and not set(formats) <= {"onnx", "openvino"}:
        raise SiameseError(
            "INT8 is an ONNX Runtime or OpenVINO (NNCF) quantized artifact: export it with --format onnx/openvino"
        )
    if dtype in ("fp16", "bf16") and "openvino" in formats:
        raise SiameseError("OpenVINO IR exports are fp32 or int8 (OpenVINO picks its own CPU precision)")
    if name is not None:
        path_component(name, "export name")
    ckpt = load_checkpoint(checkpoint)
    name = name or path_component(f"{ckpt.data_set}-{ckpt.model_config.name}-{dtype}", f"{checkpoint}: export name")
    dest = Path(out_root) / name
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
    writers = WRITERS
    if dtype == "int8":
        images, meta["int8_calibration"] = calibration_images(ckpt)
        writers = {
            **WRITERS,
            "onnx": partial(write_onnx_int8, calibration=images),
            "openvino": partial(write_openvino, calibration=images),
        }
    check_writable(dest.parent)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{name}.partial-"))
    try:
        notes = {}
        save_weights(ckpt.model, ckpt.model_config, tmp / WEIGHTS)
        for fmt in formats:
            for graph in GRAPHS:
                file = artifact_name(graph, fmt)
                log(f"writing {file}")
                try:
                    notes[file] = writers[fmt](
                        graphs[graph], graph, tmp / file, {**meta, "graph": graph, "format": fmt}
                    )
                except Exception as exc:  # exporters raise many types; name the artifact and the cause
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    raise SiameseError(f"writing {file} failed: {type(exc).__name__}: {first}") from None
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


def available_formats() -> list[str]:
    """Every format this machine can write: AOTInductor needs a C++ compiler."""
    return [*DEFAULT_FORMATS, *(["aoti"] if cxx_compiler() else [])]


def resolve_formats(requested, dtype: str, log=print) -> list[str]:
    """The formats behind --format options: `all` is every format this machine can write for `dtype`."""
    if "all" not in requested:
        return list(dict.fromkeys(requested))
    formats = available_formats() + (["triton"] if "triton" in requested else [])
    if dtype == "bf16":
        formats.remove("onnx")
        log("bf16: skipping ONNX (opset 18 has no bfloat16 convolution)")
    if dtype == "int8":
        formats = ["onnx"] + (["openvino"] if importlib.util.find_spec("nncf") else [])
        log(f"int8: {' and '.join(formats)} only (quantized artifacts)")
    return formats


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
) -> list[tuple[Path, list[Check]]]:
    """Export the given checkpoints, or the newest finished run of each variant under `runs`."""
    formats = resolve_formats(formats, dtype, log)
    checkpoints = list(checkpoints) or list(newest_checkpoints(runs).values())
    if not checkpoints:
        raise SiameseError(f"no finished training run under {runs}/; run siamese-train or pass --checkpoint")
    if name and len(checkpoints) > 1:
        raise SiameseError("--name needs a single --checkpoint")
    check_writable(out_root)
    return [
        export_checkpoint(c, out_root, name, formats, dtype, force, n_pairs, log=log, key=key, serving=serving)
        for c in checkpoints
    ]
