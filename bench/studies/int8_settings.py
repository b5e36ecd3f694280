"""How close does each INT8 quantization of the embedding graph stay to fp32?

`python -m bench.studies.int8_settings --checkpoint CKPT --fp32-export DIR --int8-export DIR` embeds
the labelled LFW test pairs (1,000 by default) with

- the fp32 export's `embedding.onnx` in ONNX Runtime (the reference);
- the int8 export's `embedding.onnx`: ONNX Runtime's static QDQ quantization (7-bit weights,
  moving-average calibration), and the same graph quantized here with 8-bit weights, plain
  MinMax and Percentile calibration;
- the int8 export's `embedding.ov.xml`: NNCF with the settings `siamese-export` uses, and the
  fp32 graph quantized here with NNCF's defaults;

all on the checkpoint's training-identity calibration images, and prints, for each, how many
test decisions agree with fp32, the accuracy change, and the feature error (99th percentile
and worst) as a share of the features' scale. Every decision comes from the fp32 export's
compare graph, so only the features differ. Accuracy only: speed is `siamese-bench`'s.
These figures use the test images, so they describe the settings; they did not pick them
blind (README, "CPU performance").
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
import numpy as np

from siamese.artifacts.checkpoint import load_checkpoint
from siamese.artifacts.folder import ExportFolder
from siamese.backends import create
from siamese.backends.onnx.quantize import calibration_feeds, quantize_onnx
from siamese.backends.onnx.runtime import make_session
from siamese.core.errors import quiet_logger, user_errors
from siamese.data.lfw import default_pairs
from siamese.parity.inputs import BATCH, parity_inputs
from siamese.tasks.export import calibration_images


def embed_all(embed, images: np.ndarray) -> np.ndarray:
    return np.concatenate([embed(images[i : i + BATCH]) for i in range(0, len(images), BATCH)])


def ort_variant(fp32: ExportFolder, images: np.ndarray, int8: Path, **settings):
    """An embed function for the fp32 embedding graph quantized by ONNX Runtime with `settings` into `int8`."""
    (name,) = fp32.metadata.inputs("embedding")
    quantize_onnx(fp32.check_onnx("embedding.onnx"), int8, calibration_feeds([name], images), **settings)
    session = make_session(int8, ["CPUExecutionProvider"])
    return lambda batch: session.run(None, {name: batch})[0]


def nncf_defaults(fp32: ExportFolder, calibration: np.ndarray):
    """An embed function for NNCF's default post-training quantization of the fp32 embedding graph."""
    import nncf
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(fp32.check_onnx("embedding.onnx")))
    batches = list(calibration_feeds(fp32.metadata.inputs("embedding"), calibration))
    with quiet_logger("nncf"):
        quantized = nncf.quantize(model, nncf.Dataset(batches), subset_size=len(batches))
    compiled = core.compile_model(quantized, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return lambda images: np.asarray(compiled([images])[0])


@click.command()
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--fp32-export", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--int8-export", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--pairs", "n_pairs", type=click.IntRange(min=1), default=1000, help="labelled test pairs")
@user_errors
def main(checkpoint: Path, fp32_export: Path, int8_export: Path, n_pairs: int) -> None:
    fp32, int8 = ExportFolder.open(fp32_export), ExportFolder.open(int8_export)
    inputs = parity_inputs(fp32.image_size, default_pairs("test"), n_pairs, 0, crop=fp32.metadata.framing.crop)
    labelled = inputs.labels >= 0
    if not labelled.any():
        raise click.UsageError("no labelled test pairs found (LFW is needed)")
    reference = create("ort-cpu")
    reference.load(fp32, ("embedding", "compare"))
    calibration, source = calibration_images(load_checkpoint(checkpoint))
    click.echo(f"{inputs.source}; variants quantized here are calibrated on {source}")

    ort_int8, nncf_int8 = create("ort-cpu"), create("openvino-ir-cpu")
    for runner in (ort_int8, nncf_int8):
        runner.load(int8, ("embedding",))
    n = len(inputs.labels)
    truth = inputs.labels[labelled].astype(bool)

    def decisions(features: np.ndarray) -> np.ndarray:
        return reference.compare(features[:n], features[n:])["same"][labelled]

    fp32_features = embed_all(reference.embed, inputs.images)
    fp32_same = decisions(fp32_features)
    fp32_accuracy = float((fp32_same == truth).mean())
    click.echo(f"{'fp32 (ONNX Runtime)':32s} accuracy {fp32_accuracy:.1%}")
    with tempfile.TemporaryDirectory(prefix="int8-settings-") as scratch:
        work = Path(scratch)
        embedders = {
            "ORT QDQ, siamese-export settings": ort_int8.embed,
            "ORT QDQ, 8-bit weights": ort_variant(fp32, calibration, work / "8bit.onnx", reduce_range=False),
            "ORT QDQ, plain MinMax": ort_variant(fp32, calibration, work / "minmax.onnx", calibration="minmax"),
            "ORT QDQ, Percentile": ort_variant(fp32, calibration, work / "percentile.onnx", calibration="percentile"),
            "NNCF, siamese-export settings": nncf_int8.embed,
            "NNCF defaults": nncf_defaults(fp32, calibration),
        }
        for label, embed in embedders.items():
            features = embed_all(embed, inputs.images)
            same = decisions(features)
            accuracy = float((same == truth).mean())
            error = np.abs(features - fp32_features) / np.abs(fp32_features).max()
            click.echo(
                f"{label:32s} agreement {float((same == fp32_same).mean()):6.1%}  "
                f"accuracy {100 * (accuracy - fp32_accuracy):+.1f} point  "
                f"feature error p99 {float(np.percentile(error, 99)):.2%}, worst {float(error.max()):.1%}"
            )


if __name__ == "__main__":
    main()
