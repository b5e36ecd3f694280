"""Which ONNX Runtime CPU session options make one pair fastest?

`python -m bench.studies.ort_session --export DIR` loads the export's `pair.onnx` once per
setting (intra-op threads, CPU memory arena, thread spinning, graph optimisation level) and
prints each session's creation time and its median latency for one pair (batch 1 by default),
measured with the benchmark's own timing loop.
Settings run twice, interleaved, so the drift of a shared machine hits all of them.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import click
import numpy as np

from bench.timing import TimingConfig, measure, summarize
from siamese.artifacts.folder import ExportFolder, ExportPolicy
from siamese.backends.onnx.runtime import GRAPH_LEVELS, SessionTuning, make_session


def settings(threads: int) -> dict[str, tuple[SessionTuning, int | None]]:
    default = SessionTuning()
    named = {"defaults (all cores)": (default, None)}
    named |= {f"{n} intra-op thread{'s' * (n > 1)}": (default, n) for n in range(1, threads + 1)}
    named |= {
        "arena off": (replace(default, cpu_arena=False), threads),
        "spinning off": (replace(default, spinning=False), threads),
    }
    named |= {f"graph level {level}": (replace(default, graph_level=level), threads) for level in GRAPH_LEVELS}
    return named


@click.command()
@click.option("--export", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--batch", type=click.IntRange(min=1), default=1)
@click.option("--threads", type=click.IntRange(min=1), default=2, help="the most intra-op threads tried")
@click.option("--seconds", type=click.FloatRange(min=0.1), default=3.0, help="timed seconds per setting and round")
def main(export: Path, batch: int, threads: int, seconds: float) -> None:
    folder = ExportFolder.open(export, ExportPolicy())
    path = folder.check_onnx("pair.onnx")
    size = folder.image_size
    images = np.random.default_rng(0).integers(0, 256, (2, batch, size, size, 3), dtype=np.uint8)
    feed = dict(zip(folder.metadata.inputs("pair"), images, strict=True))
    timing = TimingConfig(duration=seconds)
    for round_ in (1, 2):
        click.echo(f"round {round_}: batch {batch}")
        for name, (tuning, n) in settings(threads).items():
            start = time.perf_counter()
            session = make_session(path, ["CPUExecutionProvider"], n, tuning=tuning)
            created_s = time.perf_counter() - start
            result = summarize(*measure(lambda s=session: s.run(None, feed), lambda: None, timing), batch, 0, None)
            click.echo(
                f"  {name:24s} session {created_s:5.2f} s  median {result.latency_ms['median']:7.1f} ms  "
                f"p90 {result.latency_ms['p90']:7.1f} ms  spread {result.spread:.0%}"
            )
            del session


if __name__ == "__main__":
    main()
