"""Turn a BenchResult into a table, a Markdown report with a plot, and a regression check."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import click

from bench.result import BenchResult, RuntimeResult, arithmetic_key
from siamese.core.errors import SiameseError
from siamese.core.files import write_json, write_png, write_text

ABOVE_PEAK = (
    "* above the achieved GEMM rate: this runtime's kernels outrun torch's matrix product on this machine "
    "(% hw peak is against the hardware's own limit)"
)


def parity_cell(entry: RuntimeResult) -> str:
    parity = entry.parity
    if parity is None:
        return f"FAILED: {entry.error}" if entry.status == "failed" else "-"
    d = parity.decisions
    decisions = f", {d.borderline}/{d.pairs} in band +-{d.band:.3g}" if d else ""
    delta = f", acc {d.accuracy_delta:+.1%}" if d and d.accuracy_delta is not None else ""
    verdict = "ok" if parity.passed else "FAIL"
    return f"{verdict} {parity.precision} (rel {parity.max_rel:.1e}{decisions}{delta})"


def _ms(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(result: BenchResult) -> str:
    """One row per runtime and batch size; unavailable runtimes with their reason."""
    rows = [
        "| runtime | status | batch | median ms | spread | p99 ms | pairs/s | GFLOP/s | % hw peak | % GEMM "
        "| first call ms | with H2D copy ms | device MiB | parity |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in result.runtimes:
        if entry.status == "unavailable":
            rows.append(f"| {entry.name} | unavailable | | | | | | | | | | | | {entry.reason} |")
            continue
        for t in entry.timing or [None]:
            if t is None:
                rows.append(f"| {entry.name} | {entry.status} | | | | | | | | | | | | {parity_cell(entry)} |")
                continue
            share = "-" if t.peak_share is None else f"{t.peak_share:.0%}" + ("*" if t.peak_share > 1 else "")
            abilities = entry.abilities
            key = arithmetic_key(
                abilities["device"], abilities["precision"], result.export.dtype, abilities["artifact"]
            )
            limit = result.hardware_peaks.get(key)
            hw = f"{t.gflops / limit.gflops:.0%}" if limit else "-"
            memory = "-" if t.peak_memory_mb is None else f"{t.peak_memory_mb:.0f}"
            rows.append(
                f"| {entry.name} | {entry.status} | {t.batch} | {t.latency_ms['median']:.2f} | {t.spread:.0%} | "
                f"{t.latency_ms['p99']:.2f} | {t.pairs_per_s:.1f} | {t.gflops:.0f} | {hw} | {share} | "
                f"{t.first_call_ms:.0f} | {_ms(t.with_copy_ms)} | {memory} | {parity_cell(entry)} |"
            )
    if any(t.peak_share and t.peak_share > 1 for e in result.runtimes for t in e.timing):
        rows.append(f"\n{ABOVE_PEAK}")
    served = [(e, x) for e in result.runtimes for x in e.load]
    if served:
        rows += ["", "| served runtime | clients | batch | requests | pairs/s | p50 ms | p90 ms | p99 ms |"]
        rows.append("|---|---|---|---|---|---|---|---|")
        rows += [
            f"| {e.name} | {x.concurrency} | {x.batch} | {x.requests} | {x.pairs_per_s:.1f} | "
            f"{x.latency_ms['p50']:.1f} | {x.latency_ms['p90']:.1f} | {x.latency_ms['p99']:.1f} |"
            for e, x in served
        ]
    return "\n".join(rows)


def header(result: BenchResult) -> str:
    m, e = result.machine, result.export
    gpu = f", GPU {m.gpu['name']} (driver {m.gpu['driver']})" if m.gpu else ", no GPU"
    ort = m.versions.get("onnxruntime") or m.versions.get("onnxruntime-gpu")
    peaks = "; ".join(f"{k}: {p.gflops:.0f} GFLOP/s, {p.label}" for k, p in result.peaks.items())
    limits = "; ".join(f"{k}: {p.gflops:.0f} GFLOP/s = {p.label}" for k, p in result.hardware_peaks.items())
    return (
        f"command: {result.command or '-'}\nmeasured: {result.created}, commit {m.git_commit or 'unknown'}\n"
        f"export {e.path} ({e.variant}, {e.dtype}, {e.image_size}px, weights: {e.weights}); "
        f"{result.flops_per_pair / 1e9:.2f} GFLOP per pair\n"
        f"machine: {m.cpu}, {m.cores} cores, {m.torch_threads} threads{gpu}; "
        f"torch {m.versions['torch']}, onnxruntime {ort}\n"
        f"% hw peak is against the hardware's limit: {limits or 'unknown (the CPU reports no clock)'}\n"
        f"% GEMM is against the achieved GEMM rate: {peaks or '-'}\n"
        f"parity inputs: {result.parity_inputs}; reference: {result.reference}"
    )


def write_report(result: BenchResult, folder: Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plot = folder / "bench.png"
    plot_result(result, plot)
    md = folder / "report.md"
    write_text(
        md,
        "# siamese-bench report\n\n```\n"
        + header(result)
        + "\n```\n\n"
        + table(result)
        + f"\n\n![latency and throughput]({plot.name})\n\nEvery runtime ok: **{result.passed}**\n",
    )
    write_json(folder / "bench.json", result.to_dict())
    return md


def plot_result(result: BenchResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lat, ax_tput) = plt.subplots(1, 2, figsize=(11, 4.5))
    for entry in result.runtimes:
        if not entry.timing:
            continue
        batches = [t.batch for t in entry.timing]
        ax_lat.plot(batches, [t.latency_ms["median"] for t in entry.timing], "o-", label=entry.name)
        ax_tput.plot(batches, [t.pairs_per_s for t in entry.timing], "o-", label=entry.name)
    for ax, label in ((ax_lat, "median latency per batch (ms)"), (ax_tput, "pairs per second")):
        ax.set(xscale="log", yscale="log", xlabel="batch size (pairs)", ylabel=label)
        ax.grid(True, which="both", alpha=0.3)
    ax_tput.legend(fontsize=7, loc="best")
    fig.suptitle(f"pair verification, {result.export.variant} {result.export.image_size}px")
    fig.tight_layout()
    write_png(fig, path, dpi=110)


def incomparable(result: BenchResult, baseline: BenchResult) -> list[str]:
    """Why `baseline` cannot judge `result`: another export, machine or thread count, or no batch
    size in common. A figure from elsewhere is not a regression."""
    reasons = []
    if result.export.manifest_sha256 != baseline.export.manifest_sha256:
        reasons.append(
            f"another export ({baseline.export.path}, manifest {baseline.export.manifest_sha256[:12] or '?'})"
        )
    for what in ("cpu", "cores", "torch_threads"):
        now, then = getattr(result.machine, what), getattr(baseline.machine, what)
        if now != then:
            reasons.append(f"another machine ({what} {then!r}, here {now!r})")
    if result.settings.get("threads") != baseline.settings.get("threads"):
        reasons.append(f"other --threads ({baseline.settings.get('threads')}, here {result.settings.get('threads')})")
    if not set(result.settings.get("batches", [])) & set(baseline.settings.get("batches", [])):
        reasons.append(f"no batch size in common ({baseline.settings.get('batches')})")
    return reasons


# Beyond this share of the machine's CPUs taken by others during a timing, a slower figure is
# not judged: on the 2-core CI VM a process holding one core slows eager batch 1 by 50-65% while
# torch's GEMM rate, which would have to explain it, reads anywhere from 70 to 123 GFLOP/s idle
# or busy (six readings each), so no speed correction can tell load from slower code.
BUSY = 0.25


@dataclass(frozen=True)
class Regression:
    """A runtime that got worse than its baseline: failing now (batch None), or slower at `batch`."""

    runtime: str
    batch: int | None
    message: str

    def __str__(self) -> str:
        return self.message


def regressions(result: BenchResult, baseline: BenchResult, threshold: float = 0.10) -> list[Regression]:
    """Runtimes that were ok and now fail, and (runtime, batch) timings slower by more than
    `threshold` in both the fastest call and the median: other work stretches the median more
    than the fastest call, code that got slower stretches both. A slower timing taken while
    others held more than BUSY of the CPUs, now or in the baseline, is reported as not judged:
    a busy machine can be neither acquitted nor blamed. (The repeats' spread is no limit: with a
    few calls per repeat it would hide real slowdowns.)"""
    base = {(e.name, t.batch): t for e in baseline.runtimes for t in e.timing}
    base_status = {e.name: e.status for e in baseline.runtimes}
    found = []
    for entry in result.runtimes:
        if base_status.get(entry.name) == "ok" and entry.status == "failed":
            found.append(Regression(entry.name, None, f"{entry.name}: ok in the baseline, fails now"))
        for t in entry.timing:
            before = base.get((entry.name, t.batch))
            if before is None:
                continue
            slower = {k: t.latency_ms[k] / before.latency_ms[k] - 1 for k in ("min", "median")}
            if min(slower.values()) <= threshold:
                continue
            what = (
                f"{entry.name} batch {t.batch}: fastest call {t.latency_ms['min']:.2f} ms vs "
                f"{before.latency_ms['min']:.2f} ms, median {t.latency_ms['median']:.2f} ms vs "
                f"{before.latency_ms['median']:.2f} ms (+{slower['median']:.0%}); limit +{threshold:.0%}"
            )
            load = {"now": t.others_load or 0.0, "in the baseline": before.others_load or 0.0}
            if busy := [f"{share:.0%} {when}" for when, share in load.items() if share > BUSY]:
                what += f"; NOT JUDGED: other work held {' and '.join(busy)} of the CPUs: rerun on a quiet machine"
            found.append(Regression(entry.name, t.batch, what))
    return found


def best_of(first: BenchResult, second: BenchResult) -> BenchResult:
    """`first` with each (runtime, batch) timing that `second` measured faster (by median) taken
    from `second`, and each GEMM peak the higher of the two: noise on a shared machine only ever
    slows a measurement down, so the faster of two is the nearer to the truth."""
    again = {(e.name, t.batch): t for e in second.runtimes for t in e.timing}
    for entry in first.runtimes:
        timing = []
        for t in entry.timing:
            second_t = again.get((entry.name, t.batch))
            best = min((t, second_t or t), key=lambda x: x.latency_ms["median"])
            timing.append(replace(best, passes=t.passes + 1) if second_t else best)
        entry.timing = timing
    for key, peak in second.peaks.items():
        if key not in first.peaks or peak.gflops > first.peaks[key].gflops:
            first.peaks[key] = peak
    return first


@click.command()
@click.argument("result_json", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
def main(result_json: Path, folder: Path) -> None:
    """Render a siamese-bench --json result as FOLDER/report.md and bench.png (what docs/results holds)."""
    from siamese.core.files import read_limited

    try:
        result = BenchResult.from_dict(json.loads(read_limited(result_json, "benchmark result")), str(result_json))
    except (SiameseError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"report: {write_report(result, folder)}")


if __name__ == "__main__":
    main()
