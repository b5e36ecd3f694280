"""INT8: NNCF's post-training quantization of an OpenVINO IR, calibrated on images of training
identities only (siamese.backends.onnx.quantize says why)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from siamese.core.errors import SiameseError, quiet_logger

# element-wise and comparison ops NNCF leaves in fp32 (convolutions, matrix products and pooling it quantizes)
NOT_QUANTIZED_BY_NNCF = (
    *("Subtract", "Multiply", "Divide", "Power", "ReduceSum", "Sqrt", "Add"),
    *("Maximum", "Concat", "Abs", "Less", "Greater", "Sigmoid"),
)


def quantize_openvino(model, feeds: Iterator[dict[str, np.ndarray]]):
    """(INT8 OpenVINO model, notes) from an fp32 OpenVINO model, with NNCF's post-training
    quantization on the same training-identity images. The MIXED preset (asymmetric
    activations) with full bias correction measured closest to fp32 (README, "CPU performance")."""
    import nncf

    batches = list(feeds)
    if not batches:
        raise SiameseError(f"{model.get_friendly_name()}: no calibration images for INT8 quantization")
    images = sum(len(next(iter(b.values()))) for b in batches)
    with quiet_logger("nncf"):  # its progress bars and statistics tables
        quantized = nncf.quantize(
            model,
            nncf.Dataset(batches),
            preset=nncf.QuantizationPreset.MIXED,
            # only the network's own layers: quantizing the input scaling or the pair graph's
            # distance and head (as NNCF would by default) moved scores by up to 48% (README)
            ignored_scope=nncf.IgnoredScope(types=list(NOT_QUANTIZED_BY_NNCF), validate=False),
            subset_size=len(batches),  # items of the data set: batches, not images
            fast_bias_correction=False,
        )
    notes = {
        "quantization": f"nncf {nncf.__version__} quantize, preset MIXED (asymmetric activations), "
        "full bias correction, the network's layers only",
        "calibration_images": images,
    }
    return quantized, notes
