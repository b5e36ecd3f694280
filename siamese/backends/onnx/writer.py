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
