"""Does the pair graph lose speed by reading its weights from the export's shared `onnx.data`?

`python -m bench.studies.shared_weights --export DIR` saves a copy of `pair.onnx` with its weights
inside the file (what exports wrote before the weights were shared) and times both in ONNX
Runtime CPU, alternating, on one seeded batch.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click
import numpy as np

from siamese.artifacts.folder import ExportFolder, ExportPolicy
from siamese.backends.onnx.runtime import make_session


def median_seconds(path: Path, feed: dict, repeats: int) -> float:
    session = make_session(path, ["CPUExecutionProvider"])
    session.run(None, feed)  # first run: allocations
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


@click.command()
@click.option("--export", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--batch", type=click.IntRange(min=1), default=64)
@click.option("--repeats", type=click.IntRange(min=1), default=3)
def main(export: Path, batch: int, repeats: int) -> None:
    import onnx

    folder = ExportFolder.open(export, ExportPolicy())
    shared = folder.check("pair.onnx")
    size = folder.image_size
    images = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    feed = {"image_a": images, "image_b": images[::-1].copy()}
    with tempfile.TemporaryDirectory() as tmp:
        alone = Path(tmp) / "pair.onnx"
        onnx.save_model(onnx.load(str(shared)), str(alone))
        for _ in range(2):  # alternate, so drift of a shared machine hits both
            for name, path in (("shared onnx.data", shared), ("self-contained", alone)):
                seconds = median_seconds(path, feed, repeats)
                click.echo(f"  {name:17s} {seconds:.3f} s per {batch} pairs, {batch / seconds:.1f} pairs/s")


if __name__ == "__main__":
    main()
