"""The OpenVINO IR writer: converted from the graph's ONNX export, INT8 by NNCF."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from siamese.artifacts.graphs import INPUT_NAMES
from siamese.backends.onnx.quantize import calibration_feeds
from siamese.backends.onnx.writer import write_onnx
from siamese.backends.openvino.quantize import quantize_openvino
from siamese.backends.openvino.runtime import IR_WEIGHTS


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
        own = Path(tmp) / path.name
        ov.save_model(model, str(own), compress_to_fp16=False)
        notes |= share_weights(own, own.with_suffix(".bin"), path)
    return {"method": f"openvino {ov.__version__} IR", **notes}


def share_weights(xml: Path, bin_file: Path, dest: Path) -> dict:
    """Write the IR `xml` to `dest` with its constants in the export's one `openvino.bin`: a
    constant whose bytes another graph of the export stored there is referenced (the pair graph
    adds nothing to the embedding graph's weights), a new one appended. OpenVINO reads an IR's
    weights from any file given beside the XML (Core.read_model(xml, weights))."""
    shared_bin = dest.parent / IR_WEIGHTS
    stored = {}
    for other in sorted(dest.parent.glob("*.ov.xml")):
        for const in _constants(ElementTree.parse(other)):
            offset, size = int(const.get("offset")), int(const.get("size"))
            with open(shared_bin, "rb") as f:
                f.seek(offset)
                stored.setdefault(hashlib.sha256(f.read(size)).digest(), offset)
    tree, raw = ElementTree.parse(xml), bin_file.read_bytes()
    counts = {"constants_shared": 0, "constants_added": 0}
    with open(shared_bin, "ab") as out:
        for const in _constants(tree):
            offset, size = int(const.get("offset")), int(const.get("size"))
            block = raw[offset : offset + size]
            digest = hashlib.sha256(block).digest()
            if digest in stored:
                counts["constants_shared"] += 1
            else:
                stored[digest] = out.tell()
                out.write(block)
                counts["constants_added"] += 1
            const.set("offset", str(stored[digest]))
    tree.write(dest, encoding="utf-8", xml_declaration=True)
    return {"weights_file": IR_WEIGHTS, **counts}


def _constants(tree) -> list:
    """The <data> elements of an IR's Const layers: the ones that hold an offset into the weights."""
    return [
        layer.find("data")
        for layer in tree.iter("layer")
        if layer.get("type") == "Const"
        and layer.find("data") is not None
        and layer.find("data").get("offset") is not None
    ]
