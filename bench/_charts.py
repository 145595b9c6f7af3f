"""PNG charts of a benchmark run: the scale curve and the cancel-latency distributions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt

from bench._harness import Comparison


def write_charts(results: list[Comparison], directory: Path) -> list[Path]:
    """Write the charts the results have data for; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    curve = next((r.detail["curve"] for r in results if "curve" in r.detail), None)
    if curve:
        written.append(_scale_chart(curve, directory / "scale.png"))
    latencies = [r for r in results if "samples_ms" in r.detail]
    if latencies:
        written.append(_latency_chart(latencies, directory / "cancel_latency.png"))
    return written


def _scale_chart(curve: list[dict[str, Any]], path: Path) -> Path:
    sizes = [point["n"] for point in curve]
    fig, (cpu, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    cpu.plot(sizes, [p["agtl_cpu_us"] for p in curve], "o-", label="agtl streaming_execution")
    cpu.plot(sizes, [p["raw_cpu_us"] for p in curve], "s--", label="raw trio (task + channel)")
    cpu.set(xscale="log", xlabel="concurrent executions", ylabel="CPU us per execution")
    cpu.set_ylim(bottom=0)
    cpu.set_title("Cost per execution as concurrency grows")
    memory.plot(sizes, [p["agtl_peak_bytes"] / 1024 for p in curve], "o-", label="agtl")
    memory.plot(sizes, [p["raw_peak_bytes"] / 1024 for p in curve], "s--", label="raw trio")
    memory.axhline(16, color="crimson", linestyle=":", label="target 16 KB")
    memory.set(xscale="log", xlabel="concurrent executions", ylabel="peak KB per execution")
    memory.set_ylim(bottom=0)
    memory.set_title("Peak traced memory per execution")
    for axes in (cpu, memory):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _latency_chart(results: list[Comparison], path: Path) -> Path:
    fig, axes = plt.subplots(figsize=(10, 0.9 * len(results) + 1.6))
    labels = [
        f"{_short(r.name)}\np50 {r.detail['p50_ms']:.2f} ms, p99 {r.detail['p99_ms']:.2f} ms, "
        f"n={len(r.detail['samples_ms'])}"
        for r in results
    ]
    samples = [r.detail["samples_ms"] for r in results]
    axes.boxplot(samples, vert=False, whis=(1, 99), showfliers=True)
    axes.set_yticks(range(1, len(labels) + 1), labels, fontsize=8)
    axes.set(xscale="log", xlabel="cancel() to result() returning, ms (log scale)")
    axes.set_title("Cancel latency distributions (whiskers p1-p99)")
    axes.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _short(name: str) -> str:
    return name.split(" (")[0].replace(" latency", "")
