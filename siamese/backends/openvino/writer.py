"""The OpenVINO IR writer: converted from the graph's ONNX export, INT8 by NNCF."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from siamese.artifacts.graphs import INPUT_NAMES
from siamese.backends.onnx.quantize import calibration_feeds
from siamese.backends.onnx.writer import write_onnx
from siamese.backends.openvino.quantize import quantize_openvino


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
