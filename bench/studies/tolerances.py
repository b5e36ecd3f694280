"""Measure what each reduced precision really does to this network's outputs, on the CPU.

`python -m bench.studies.tolerances --export DIR` runs the export's fp32 graphs (from its tensor-only
weights) on real LFW test pairs in fp32, bf16 autocast, fp16 autocast and emulated TF32
(the inputs of every convolution and matrix product rounded to TF32's 10-bit mantissa, fp32
accumulation, as tensor cores do), and prints each output's largest error relative to its
scale (`max|a - r| / max|r|`) and the worst per-element error relative to the element. The
tolerances of `siamese.parity.compare.TOLERANCES` are set about 3x above these figures.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import click
import numpy as np
import torch

from siamese.artifacts.folder import ExportFolder
from siamese.artifacts.graphs import graphs_from_weights
from siamese.core.errors import SiameseError, user_errors
from siamese.data.lfw import default_pairs
from siamese.parity.inputs import parity_inputs


def round_to_tf32(x: torch.Tensor) -> torch.Tensor:
    """fp32 -> the nearest value with a 10-bit mantissa (round to nearest even), kept in fp32."""
    bits = x.float().contiguous().view(torch.int32)
    rounded = (bits + 0xFFF + ((bits >> 13) & 1)) & ~0x1FFF
    return rounded.view(torch.float32)


@contextlib.contextmanager
def emulated_tf32(module: torch.nn.Module):
    """Every Conv2d and Linear of `module` computes on TF32-rounded inputs and weights."""
    layers = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    saved = [m.weight.data.clone() for m in layers]
    handles = [m.register_forward_pre_hook(lambda m, args: (round_to_tf32(args[0]),)) for m in layers]
    for m in layers:
        m.weight.data = round_to_tf32(m.weight.data)
    try:
        yield
    finally:
        for m, w, h in zip(layers, saved, handles, strict=True):
            m.weight.data = w
            h.remove()


def _outputs(graphs, a, b) -> dict[str, np.ndarray]:
    with torch.inference_mode():
        score, _ = graphs["pair"](a, b)
        features = graphs["embedding"](torch.cat([a, b]))
    return {"features": features.float().numpy(), "score": score.float().numpy()}


def measure_precisions(export: ExportFolder, n_pairs: int = 16) -> dict[str, dict[str, tuple[float, float]]]:
    """precision -> output -> (max error / output scale, max error / |element| above 1% of scale)."""
    graphs = graphs_from_weights(export)
    inputs = parity_inputs(export.image_size, default_pairs("test"), n_pairs, 0, crop=export.metadata.framing.crop)
    if not len(inputs.labels):
        raise SiameseError(f"no LFW test pairs to measure on: {inputs.source}")
    a, b = torch.from_numpy(inputs.image_a), torch.from_numpy(inputs.image_b)
    reference = _outputs(graphs, a, b)
    modes = {
        "bf16": lambda: torch.autocast("cpu", dtype=torch.bfloat16),
        "fp16": lambda: torch.autocast("cpu", dtype=torch.float16),
        "tf32": lambda: emulated_tf32(graphs["pair"]),
    }
    found = {}
    for precision, mode in modes.items():
        with mode():
            actual = _outputs(graphs, a, b)
        found[precision] = {}
        for name, ref in reference.items():
            err = np.abs(actual[name].astype(np.float64) - ref)
            scale = np.abs(ref).max()
            big = np.abs(ref) > 0.01 * scale
            found[precision][name] = (float(err.max() / scale), float((err[big] / np.abs(ref[big])).max()))
    return found


@click.command()
@click.option("--export", "export_dir", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True)
@click.option("--pairs", type=click.IntRange(min=1), default=16, help="LFW test pairs to measure on")
@user_errors
def main(export_dir, pairs):
    """Print each reduced precision's measured output error against fp32."""
    for precision, outputs in measure_precisions(ExportFolder.open(export_dir), pairs).items():
        cells = ", ".join(f"{k}: {scaled:.2e} of scale, {own:.2e} of itself" for k, (scaled, own) in outputs.items())
        click.echo(f"{precision}: {cells}")


if __name__ == "__main__":
    main()
