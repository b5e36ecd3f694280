"""`siamese-bench`: thin click layer over bench.harness.main."""

from __future__ import annotations

from pathlib import Path

import click

from bench.harness import BenchConfig
from bench.harness import main as bench_main
from bench.timing import TimingConfig
from siamese.artifacts.folder import ExportPolicy
from siamese.backends import RUNTIMES
from siamese.cli.options import policy_options
from siamese.core.errors import user_errors
from siamese.core.params import FiniteFloat, IntList, OutputFile

TOLERANCE_KEYS = ("atol", "rtol", "accuracy_delta")


class NameList(click.ParamType):
    name = "NAME[,NAME...]"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, list):
            return value
        if value == "all":
            return None
        names = [n.strip() for n in str(value).split(",") if n.strip()]
        unknown = [n for n in names if n not in RUNTIMES]
        if not names or unknown:
            self.fail(
                f"unknown runtime(s) {', '.join(unknown) or repr(value)}; known: {', '.join(RUNTIMES)}", param, ctx
            )
        return names


def _tolerances(ctx, param, items) -> dict[str, float]:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if key not in TOLERANCE_KEYS or not 0 <= number < float("inf"):
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE with KEY one of {', '.join(TOLERANCE_KEYS)}")
        out[key] = number
    return out


@click.command(context_settings={"show_default": True})
@click.option(
    "--batch", "batches", type=IntList(), default="64", help="comma-separated batch sizes (pairs), e.g. 1,8,64"
)
@click.option("--runtimes", type=NameList(), default="all", help=f"comma-separated subset of: {', '.join(RUNTIMES)}")
@click.option(
    "--export",
    type=click.Path(path_type=Path),
    default=None,
    help="export folder; default the newest under exports/, else the newest checkpoint exported now",
)
@click.option("--warmup", type=click.IntRange(min=0), default=3, help="warm-up iterations (at least)")
@click.option("--warmup-seconds", type=FiniteFloat(min=0), default=1.0, help="warm-up duration (at least)")
@click.option("--iterations", type=click.IntRange(min=1), default=None, help="timed iterations per repeat")
@click.option("--duration", type=FiniteFloat(min=0), default=3.0, help="seconds of timed calls per runtime and batch")
@click.option("--repeats", type=click.IntRange(min=1), default=3, help="timing repeats; their spread is the noise")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads (torch and ONNX Runtime)")
@click.option("--flush-denormal", is_flag=True, help="PyTorch CPU: flush denormal floats to zero")
@click.option(
    "--pairs",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="labelled pair file for parity; default the LFW test split when available",
)
@click.option("--parity-pairs", type=click.IntRange(min=0), default=64)
@click.option("--random-pairs", type=click.IntRange(min=0), default=16)
@click.option(
    "--tolerance",
    "tolerances",
    multiple=True,
    callback=_tolerances,
    help="override the precision's tolerance: atol=, rtol= or accuracy_delta= (repeatable)",
)
@click.option(
    "--save-inputs",
    type=OutputFile(".npz"),
    default=None,
    help="write inputs and reference outputs: FILE.npz and Polygraphy JSON beside it",
)
@click.option(
    "--load-reference", type=click.Path(path_type=Path, exists=True), default=None, help="a --save-inputs .npz"
)
@click.option("--no-timing", is_flag=True, help="parity only")
@click.option("--isolate", is_flag=True, help="run every runtime in its own child process")
@click.option("--json", "json_path", type=OutputFile(".json"), default=None)
@click.option("--report", "report_dir", type=click.Path(path_type=Path, file_okay=False), default=None)
@click.option(
    "--compare",
    "baseline",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="a --json of an earlier run: exit non-zero on a regression beyond its noise",
)
@click.option(
    "--triton",
    default=None,
    metavar="URL",
    help="a Triton server (siamese-serve) at http://HOST:PORT or grpc://HOST:PORT, benchmarked beside the runtimes",
)
@click.option("--concurrency", type=IntList(), default="1", help="served runtimes: concurrent clients, e.g. 1,4,16")
@click.option("--regression-threshold", type=FiniteFloat(min=0), default=0.10, help="allowed median growth")
@policy_options
@user_errors
def main(warmup, warmup_seconds, iterations, duration, repeats, no_timing, trust_export, verify_key, **options):
    """Benchmark exported siamese models across runtimes: parity, latency and throughput."""
    timing = TimingConfig(warmup, warmup_seconds, iterations, duration, repeats)
    policy = ExportPolicy.from_options(trust_export, verify_key)
    bench_main(
        BenchConfig(timing=timing, timing_enabled=not no_timing, policy=policy, **options),
        echo=click.echo,
        log=lambda m: click.echo(m, err=True),
    )
