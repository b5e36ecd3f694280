"""A pair list end to end, decoding included: what `siamese-verify --pairs` does against the naive path.

`python -m bench.studies.pair_workload --export DIR --pairs pairsDevTest.txt` times, in one process:

- naive: every pair's two images decoded and run through the pair graph, batch after batch,
  so an image in several pairs is decoded and embedded each time, and the runtime waits for
  the decoder;
- siamese-verify: each distinct image decoded and embedded once, the next batch decoded
  while the runtime embeds this one, then the compare graph on the features.

It checks that both paths give the same decisions, and prints pairs/s of each.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np

from siamese.artifacts.folder import ExportPolicy
from siamese.core.errors import user_errors
from siamese.core.pairs import read_pairs
from siamese.core.preprocess import check_pair_images, image_file
from siamese.tasks.verify import Verifier, image_root_for


def naive(verifier: Verifier, pairs, root: Path, batch: int) -> np.ndarray:
    verifier.runner.load(verifier.folder, ("pair",))
    same = []
    for i in range(0, len(pairs), batch):
        chunk = pairs[i : i + batch]
        a = verifier.load_images([image_file(root, p.a) for p in chunk])
        b = verifier.load_images([image_file(root, p.b) for p in chunk])
        same.append(verifier.runner.pair(a, b)["same"])
    return np.concatenate(same)


@click.command()
@click.option("--export", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--pairs", "pairs_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--runtime", default="ort-cpu")
@click.option("--batch", type=click.IntRange(min=1), default=64)
@click.option("--threads", type=click.IntRange(min=1), default=None)
@click.option("--detect/--no-detect", default=True, help="frame each face as siamese-verify does")
@user_errors
def main(export: Path, pairs_file: Path, runtime: str, batch: int, threads: int | None, detect: bool) -> None:
    pairs = read_pairs(pairs_file, labels_required=False)
    root = check_pair_images(image_root_for(pairs_file), (k for p in pairs for k in (p.a, p.b)))
    verifier = Verifier(export, runtime, threads, ExportPolicy(), detect=detect)
    distinct = len({k for p in pairs for k in (p.a, p.b)})
    start = time.perf_counter()
    naive_same = naive(verifier, pairs, root, batch)
    naive_s = time.perf_counter() - start
    start = time.perf_counter()
    rows = verifier.verify_pairs(pairs, root, batch)
    verify_s = time.perf_counter() - start
    agree = np.mean(naive_same == np.array([r.same for r in rows]))
    click.echo(f"{len(pairs)} pairs, {distinct} distinct images, {runtime}, batch {batch}")
    click.echo(f"  naive (2 images per pair, decode then run): {naive_s:7.1f} s  {len(pairs) / naive_s:6.1f} pairs/s")
    click.echo(
        f"  siamese-verify (distinct images, decode overlapped): {verify_s:7.1f} s  "
        f"{len(pairs) / verify_s:6.1f} pairs/s  ({naive_s / verify_s:.2f}x)"
    )
    click.echo(f"  decisions agree on {agree:.2%} of pairs")


if __name__ == "__main__":
    main()
