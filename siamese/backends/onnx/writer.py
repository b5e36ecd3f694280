"""The ONNX writer: the dynamo exporter, INT8 by ONNX Runtime's quantizer, and one weights file
that every ONNX graph of an export shares (a tensor another graph stored is referenced)."""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from siamese.artifacts.folder import WEIGHTS
from siamese.artifacts.graphs import INPUT_NAMES, OUTPUT_NAMES, dynamic_batch, example_inputs
from siamese.backends.onnx.quantize import calibration_feeds, quantize_onnx
from siamese.core.errors import quiet_logger

ONNX_OPSET = 18
# the one weights file of every ONNX graph of an export (each graph alone is under 2 GiB anyway)
ONNX_WEIGHTS = "onnx.data"


def onnx_proto(module, graph: str, image_size: int):
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
                dynamic_shapes=dynamic_batch(graph),
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


def write_onnx(module, graph: str, path: Path, meta: dict, calibration: np.ndarray | None = None) -> dict:
    """The graph as ONNX; with `calibration` images (training identities), statically quantized
    to INT8 (the compare graph stays fp32: features in, one small head, nothing to speed up)."""
    import onnx

    if calibration is None or graph == "compare":
        proto, method = onnx_proto(module, graph, meta["image_size"])
        return {"method": method, "opset": ONNX_OPSET, **save_onnx(proto, path, meta)}
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / path.name, Path(tmp) / f"int8-{path.name}"
        notes = write_onnx(module, graph, fp32, meta)
        notes |= quantize_onnx(fp32, int8, calibration_feeds(INPUT_NAMES[graph], calibration))
        proto = onnx.load(str(int8))
    del proto.metadata_props[:]
    return {**notes, **save_onnx(proto, path, meta)}


def save_onnx(proto, path: Path, meta: dict) -> dict:
    """Label `proto` with the metadata, point its weights into the export's weight files, save and check it."""
    import onnx

    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value if isinstance(value, str) else json.dumps(value))
    notes = store_external(proto, path.parent)
    onnx.save_model(proto, str(path))
    onnx.checker.check_model(str(path), full_check=True)
    return notes


def store_external(proto, folder: Path, min_bytes: int = 1024) -> dict:
    """Point every large initializer of `proto` at bytes already on disk in `folder`, so each
    tensor of an export is stored once: in `weights.safetensors` (the checkpoint's fp32 weights,
    which the parity reference reads too) where its bytes are the same, else in `onnx.data`,
    which every ONNX graph of the export shares (a tensor another graph put there is referenced,
    a new one appended, page-aligned). Returns how many tensors went where."""
    from onnx import TensorProto, numpy_helper
    from onnx.external_data_helper import set_external_data

    stored = _stored_tensors(folder)  # sha256 of the bytes -> (file, offset, length)
    counts = {"tensors_in_weights": 0, "tensors_shared": 0, "tensors_added": 0}
    data_file = folder / ONNX_WEIGHTS
    for tensor in proto.graph.initializer:
        raw = numpy_helper.to_array(tensor).tobytes()
        if len(raw) < min_bytes:
            continue
        digest = hashlib.sha256(raw).digest()
        where = stored.get(digest)
        if where is None:
            with open(data_file, "ab") as data:
                end = data.tell()
                offset = end + -end % 4096  # page-aligned, so runtimes can map it
                data.write(b"\0" * (offset - end) + raw)
            where = stored[digest] = (ONNX_WEIGHTS, offset, len(raw))
            counts["tensors_added"] += 1
        else:
            counts["tensors_in_weights" if where[0] == WEIGHTS else "tensors_shared"] += 1
        for field in ("float_data", "int32_data", "int64_data", "double_data"):
            tensor.ClearField(field)
        tensor.raw_data = raw  # set_external_data insists on it; then the bytes live only in the file
        set_external_data(tensor, where[0], offset=where[1], length=where[2])
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
    return counts


def _stored_tensors(folder: Path) -> dict[bytes, tuple[str, int, int]]:
    """Every tensor already on disk in an export folder, by the sha256 of its bytes: those of
    `weights.safetensors` (its header gives each tensor's offsets) and those that the ONNX graphs
    beside it keep in `onnx.data`."""
    import onnx

    places = []
    weights = folder / WEIGHTS
    if weights.is_file():
        with open(weights, "rb") as f:
            header_size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(header_size))
        for name, info in header.items():
            if name != "__metadata__":
                start, end = info["data_offsets"]
                places.append((WEIGHTS, 8 + header_size + start, end - start))
    for model in sorted(folder.glob("*.onnx")):
        for tensor in onnx.load(str(model), load_external_data=False).graph.initializer:
            info = {e.key: e.value for e in tensor.external_data}
            if info.get("location") == ONNX_WEIGHTS:
                places.append((ONNX_WEIGHTS, int(info["offset"]), int(info["length"])))
    stored = {}
    for file, offset, length in dict.fromkeys(places):
        with open(folder / file, "rb") as f:
            stored.setdefault(hashlib.sha256(_read_at(f, offset, length)).digest(), (file, offset, length))
    return stored


def _read_at(file, offset: int, length: int) -> bytes:
    file.seek(offset)
    return file.read(length)
