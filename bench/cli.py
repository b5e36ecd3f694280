"""`siamese-bench`: thin click layer over bench.harness."""

from __future__ import annotations

import json
from pathlib import Path

import click

from bench.runtimes import RUNTIMES
from siamese.cli import user_errors
from siamese.errors import SiameseError


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise click.BadParameter("batch sizes must be positive integers")
    return values


def _tolerances(items) -> dict[str, float]:
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            raise click.BadParameter(f"{item!r}: expected OUTPUT=RTOL, e.g. score=1e-3") from None
    return out


@click.command(context_settings={"show_default": True})
@click.option("--batch", default="64", help="comma-separated batch sizes (pairs), e.g. 1,8,64")
@click.option("--runtimes", default="all", help=f"comma-separated subset of: {', '.join(RUNTIMES)}")
@click.option(
    "--export",
    "export_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="export folder; default the newest under exports/, else the newest checkpoint exported now",
)
@click.option("--warmup", type=click.IntRange(min=0), default=3, help="warm-up iterations (at least)")
@click.option("--warmup-seconds", type=float, default=1.0, help="warm-up duration (at least)")
@click.option("--iterations", type=click.IntRange(min=1), default=None, help="timed iterations (else --duration)")
@click.option("--duration", type=float, default=3.0, help="seconds of timed iterations per runtime and batch")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads (torch and ONNX Runtime)")
@click.option("--flush-denormal", is_flag=True, help="PyTorch CPU: flush denormal floats to zero")
@click.option(
    "--pairs",
    type=click.Path(path_type=Path),
    default=None,
    help="labelled pair file for parity; default the LFW test split when available",
)
@click.option("--parity-pairs", type=click.IntRange(min=0), default=64)
@click.option("--random-pairs", type=click.IntRange(min=0), default=16)
@click.option("--tolerance", multiple=True, help="OUTPUT=RTOL override, e.g. score=1e-3 (repeatable)")
@click.option("--save-inputs", type=click.Path(path_type=Path), default=None, help=".npz of inputs and reference")
@click.option("--load-reference", type=click.Path(path_type=Path), default=None, help=".npz from --save-inputs")
@click.option("--no-timing", is_flag=True, help="parity only")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="write every figure")
@click.option("--report", "report_dir", type=click.Path(path_type=Path), default=None, help="Markdown + PNG")
@click.option(
    "--compare",
    "baseline",
    type=click.Path(path_type=Path),
    default=None,
    help="baseline JSON: exit non-zero on a regression",
)
@click.option("--regression-threshold", type=float, default=0.10, help="allowed median latency growth")
@user_errors
def main(
    batch,
    runtimes,
    export_dir,
    warmup,
    warmup_seconds,
    iterations,
    duration,
    threads,
    flush_denormal,
    pairs,
    parity_pairs,
    random_pairs,
    tolerance,
    save_inputs,
    load_reference,
    no_timing,
    json_path,
    report_dir,
    baseline,
    regression_threshold,
):
    """Benchmark exported siamese models across runtimes: parity, latency and throughput."""
    from bench.harness import BenchConfig, run_benchmark
    from bench.report import header, regressions, table, write_report
    from bench.timing import TimingConfig

    cfg = BenchConfig(
        export=export_dir,
        runtimes=None if runtimes == "all" else [r.strip() for r in runtimes.split(",") if r.strip()],
        batches=_int_list(batch),
        timing=TimingConfig(warmup, warmup_seconds, iterations, duration),
        threads=threads,
        flush_denormal=flush_denormal,
        pairs=pairs,
        parity_pairs=parity_pairs,
        random_pairs=random_pairs,
        tolerances=_tolerances(tolerance),
        save_inputs=save_inputs,
        load_reference=load_reference,
        timing_enabled=not no_timing,
    )
    baseline_result = None
    if baseline:
        try:
            baseline_result = json.loads(Path(baseline).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SiameseError(f"{baseline}: unreadable baseline ({exc})") from None
    result = run_benchmark(cfg, log=lambda m: click.echo(m, err=True))
    click.echo(header(result))
    click.echo(table(result))
    if json_path:
        json_path.write_text(json.dumps(result, indent=2) + "\n")
    if report_dir:
        click.echo(f"report: {write_report(result, report_dir)}")
    failures = [e["name"] for e in result["runtimes"] if e["available"] and not e["parity"]["passed"]]
    if failures:
        raise SiameseError(f"parity failed for {', '.join(failures)}")
    if baseline_result is not None:
        found = regressions(result, baseline_result, regression_threshold)
        if found:
            raise SiameseError(f"{len(found)} regression(s) against {baseline}: " + "; ".join(found))
        click.echo(f"no regression against {baseline} (threshold +{regression_threshold:.0%})")
