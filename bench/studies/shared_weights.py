"""Does an ONNX graph lose load time or speed by reading its weights from `weights.safetensors`?

An export's ONNX initializers point into the safetensors file
that holds the checkpoint's fp32 weights for the parity reference, so each tensor is stored
once. `python -m bench.studies.shared_weights --export DIR` saves a copy of the export's
`pair.onnx` with its weights in a page-aligned `onnx.data` of its own (what exports wrote
before) and times both in ONNX Runtime CPU and OpenVINO, alternating: session creation (the
load) and the median batch.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from siamese.artifacts.folder import ExportFolder, ExportPolicy
from siamese.backends.onnx.runtime import make_session


def load_openvino(path: Path):
    import openvino as ov

    return ov.Core().compile_model(str(path), "CPU")


def load_ort(path: Path):
    return make_session(path, ["CPUExecutionProvider"])


def run(model, feed: dict):
    return model(feed) if not hasattr(model, "get_inputs") else model.run(None, feed)


def timed(load, path: Path, feed: dict, repeats: int) -> tuple[float, float]:
    """(seconds to load, median seconds per batch)."""
    start = time.perf_counter()
    model = load(path)
    load_s = time.perf_counter() - start
    run(model, feed)  # first run: allocations
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(model, feed)
        times.append(time.perf_counter() - start)
    return load_s, float(np.median(times))


def own_weights_copy(graph: Path, folder: Path) -> Path:
    """`graph` saved with its weights in a page-aligned `onnx.data` beside it in `folder`."""
    import onnx

    from siamese.backends.onnx.writer import ONNX_WEIGHTS, store_external

    copy = folder / graph.name
    proto = onnx.load(str(graph))  # the weights, read from wherever the export keeps them
    for tensor in proto.graph.initializer:
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT
    store_external(proto, folder)
    onnx.save_model(proto, str(copy))
    assert (folder / ONNX_WEIGHTS).is_file()
    return copy


@click.command()
@click.option("--export", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--batch", type=click.IntRange(min=1), default=64)
@click.option("--repeats", type=click.IntRange(min=1), default=3)
@click.option("--rounds", type=click.IntRange(min=1), default=2)
def main(export: Path, batch: int, repeats: int, rounds: int) -> None:
    folder = ExportFolder.open(export, ExportPolicy())
    in_weights = folder.check_onnx("pair.onnx")
    size = folder.image_size
    images = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    feed = {"image_a": images, "image_b": images[::-1].copy()}
    loaders = {"onnxruntime": load_ort}
    if importlib.util.find_spec("openvino"):
        loaders["openvino"] = load_openvino
    with tempfile.TemporaryDirectory() as tmp:
        own = own_weights_copy(in_weights, Path(tmp))
        for round_ in range(1, rounds + 1):  # alternate, so drift of a shared machine hits both
            for runtime, load in loaders.items():
                for name, path in (("weights.safetensors", in_weights), ("own onnx.data", own)):
                    load_s, seconds = timed(load, path, feed, repeats)
                    click.echo(
                        f"round {round_} {runtime:11s} {name:19s} load {load_s:6.2f} s  "
                        f"{seconds:.3f} s per {batch} pairs, {batch / seconds:6.1f} pairs/s"
                    )


if __name__ == "__main__":
    main()
