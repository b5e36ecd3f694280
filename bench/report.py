"""Turn a benchmark result into a table, a Markdown report with a plot, and a regression check."""

from __future__ import annotations

import json
from pathlib import Path


def _parity_cell(entry: dict) -> str:
    parity = entry["parity"]
    if "error" in parity:
        return "FAIL (error)"
    worst = max((o["max_rel"] for o in parity["outputs"] if o["agreement"] is None), default=0.0)
    verdict = "ok" if parity["passed"] else "FAIL"
    delta = f", acc {parity['accuracy_delta']:+.3f}" if "accuracy_delta" in parity else ""
    borderline = f", {parity['borderline_pairs']} borderline" if parity.get("borderline_pairs") else ""
    return f"{verdict} (rel {worst:.1e}, agree {parity['decision_agreement']:.1%}{borderline}{delta})"


def table(result: dict) -> str:
    """One row per runtime and batch size; unavailable runtimes with their reason."""
    rows = [
        "| runtime | batch | median ms | p90 ms | p99 ms | min ms | pairs/s | GFLOP/s | % peak | parity |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in result["runtimes"]:
        if not entry["available"]:
            rows.append(f"| {entry['name']} | - | - | - | - | - | - | - | - | unavailable: {entry['reason']} |")
            continue
        for t in entry["timing"] or [None]:
            if t is None:
                rows.append(f"| {entry['name']} | - | - | - | - | - | - | - | - | {_parity_cell(entry)} |")
                continue
            lat = t["latency_ms"]
            share = f"{t['peak_share']:.0%}" if t["peak_share"] is not None else "-"
            rows.append(
                f"| {entry['name']} | {t['batch']} | {lat['median']:.2f} | {lat['p90']:.2f} | {lat['p99']:.2f} | "
                f"{lat['min']:.2f} | {t['pairs_per_s']:.1f} | {t['gflops']:.0f} | {share} | {_parity_cell(entry)} |"
            )
    return "\n".join(rows)


def header(result: dict) -> str:
    m, e = result["machine"], result["export"]
    gpu = f", GPU {m['gpu']['name']} (driver {m['gpu']['driver']})" if m["gpu"] else ", no GPU"
    ort = m["versions"]["onnxruntime"] or m["versions"]["onnxruntime-gpu"]
    peaks = ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in result["peak_gflops"].items())
    return (
        f"export {e['path']} ({e['variant']}, {e['image_size']}px, weights: {e['weights']}); "
        f"{result['flops_per_pair'] / 1e9:.2f} GFLOP per pair\n"
        f"machine: {m['cpu']}, {m['cores']} cores, {m['torch_threads']} threads{gpu}; "
        f"torch {m['versions']['torch']}, onnxruntime {ort}\n"
        f"measured peak (GEMM): {peaks or '-'}\n"
        f"parity inputs: {result['parity_inputs']['source']}; reference {result['parity_inputs']['reference']}"
    )


def write_report(result: dict, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    plot = folder / "bench.png"
    plot_result(result, plot)
    md = folder / "report.md"
    md.write_text(
        "# siamese-bench report\n\n```\n"
        + header(result)
        + "\n```\n\n"
        + table(result)
        + f"\n\n![latency and throughput]({plot.name})\n\nParity passed: **{result['passed']}**\n"
    )
    (folder / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    return md


def plot_result(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lat, ax_tput) = plt.subplots(1, 2, figsize=(11, 4.5))
    for entry in result["runtimes"]:
        if not entry.get("timing"):
            continue
        batches = [t["batch"] for t in entry["timing"]]
        ax_lat.plot(batches, [t["latency_ms"]["median"] for t in entry["timing"]], "o-", label=entry["name"])
        ax_tput.plot(batches, [t["pairs_per_s"] for t in entry["timing"]], "o-", label=entry["name"])
    for ax, label in ((ax_lat, "median latency per batch (ms)"), (ax_tput, "pairs per second")):
        ax.set(xscale="log", yscale="log", xlabel="batch size (pairs)", ylabel=label)
        ax.grid(True, which="both", alpha=0.3)
    ax_tput.legend(fontsize=7, loc="best")
    fig.suptitle(f"pair verification, {result['export']['variant']} {result['export']['image_size']}px")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def regressions(result: dict, baseline: dict, threshold: float = 0.10) -> list[str]:
    """(runtime, batch) pairs whose median latency grew by more than `threshold`, or that lost parity."""
    base = {
        (e["name"], t["batch"]): t["latency_ms"]["median"]
        for e in baseline.get("runtimes", [])
        for t in e.get("timing") or []
    }
    base_parity = {e["name"]: e["parity"]["passed"] for e in baseline.get("runtimes", []) if e.get("available")}
    found = []
    for entry in result["runtimes"]:
        if not entry["available"]:
            continue
        if base_parity.get(entry["name"]) and not entry["parity"]["passed"]:
            found.append(f"{entry['name']}: parity passed in the baseline, fails now")
        for t in entry["timing"]:
            before = base.get((entry["name"], t["batch"]))
            now = t["latency_ms"]["median"]
            if before and now > before * (1 + threshold):
                found.append(
                    f"{entry['name']} batch {t['batch']}: median {now:.2f} ms vs {before:.2f} ms "
                    f"(+{now / before - 1:.0%}, limit +{threshold:.0%})"
                )
    return found
