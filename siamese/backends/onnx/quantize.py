"""INT8: ONNX Runtime's static quantization of an exported fp32 ONNX graph (NNCF's of the same
graph as an OpenVINO IR: siamese.backends.openvino.quantize).

QDQ format (QuantizeLinear/DequantizeLinear pairs around every convolution and matrix product,
which ONNX Runtime fuses into integer kernels, and other runtimes can read), per-channel int8
weights, uint8 activations whose ranges are calibrated on images of training identities only:
calibrating on test people would tune the model to its own test set.

Weights use 7 of their 8 bits (`reduce_range`): on x86 CPUs without VNNI, ONNX Runtime's
uint8 x int8 kernel (VPMADDUBSW) adds pairs of products in int16 and can saturate with full
8-bit weights; ONNX Runtime's quantization guide recommends this there, and it costs little
accuracy (measured: README, "CPU performance").
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from siamese.core.errors import SiameseError, quiet_logger

QUANTIZED_OPS = ["Conv", "Gemm", "MatMul"]
CALIBRATION_BATCH = 16


def calibration_feeds(input_names: list[str], images: np.ndarray) -> Iterator[dict[str, np.ndarray]]:
    """Feeds for a graph's inputs from (N, S, S, 3) uint8 images: a one-input graph sees them
    all; a two-input (pair) graph sees them as pairs of consecutive halves."""
    step = CALIBRATION_BATCH * len(input_names)
    for start in range(0, len(images) - step + 1, step):
        chunk = images[start : start + step]
        yield {name: chunk[i :: len(input_names)] for i, name in enumerate(input_names)}


# how activation ranges are calibrated: "moving-average" (of each batch's min and max, the
# export's), "minmax" (the extremes of all batches) or "percentile" (ONNX Runtime's default, 99.999)
CALIBRATIONS = ("moving-average", "minmax", "percentile")


def quantize_onnx(
    fp32_model: Path,
    int8_model: Path,
    feeds: Iterator[dict[str, np.ndarray]],
    reduce_range: bool = True,
    calibration: str = "moving-average",
) -> dict:
    """Write the static INT8 QDQ version of `fp32_model`; returns notes for the export's metadata.
    The export keeps the defaults; the others exist to measure what they cost
    (`python -m bench.studies.int8_settings`)."""
    if calibration not in CALIBRATIONS:
        raise SiameseError(f"unknown calibration {calibration!r}; known: {', '.join(CALIBRATIONS)}")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.images = 0

        def get_next(self):
            feed = next(feeds, None)
            self.images += 0 if feed is None else sum(len(x) for x in feed.values())
            return feed

    reader = Reader()
    with quiet_logger():  # ORT suggests its pre-processing; its optimiser runs at load
        quantize_static(
            str(fp32_model),
            str(int8_model),
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=QUANTIZED_OPS,
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile if calibration == "percentile" else CalibrationMethod.MinMax,
            # the mean of each batch's range, not the extreme of all: one outlier image no longer
            # coarsens every activation's steps (measured: README, "CPU performance")
            extra_options={"CalibMovingAverage": calibration == "moving-average"},
        )
    if not reader.images:
        raise SiameseError(f"{fp32_model.name}: no calibration images for INT8 quantization")
    return {
        "quantization": "onnxruntime.quantization.quantize_static, QDQ, per-channel int8 weights "
        f"({'7 bits, reduce_range' if reduce_range else '8 bits'}), uint8 activations, {calibration} calibration",
        "quantized_ops": QUANTIZED_OPS,
        "calibration_images": reader.images,
    }
