"""Run the benchmarks: ``python -m bench [--only NAME|GROUP]... [--quick] [--json PATH]``.

Most figures are ratios against a baseline measured in the same process, in ABBA order; a
few are against a fixed budget, marked "(const)" in the table. The table shows each with its
target; the JSON file and the PNG charts hold everything, samples included.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio
from rich.console import Console
from rich.table import Table

from bench import (
    agents,
    core,
    evals,
    guardrails,
    local,
    mcp,
    otel,
    peers,
    protocols,
    remote,
    resilience,
    scale,
    serve,
    temporal,
    temporal_waits,
    tools,
)
from bench._charts import write_charts
from bench._harness import Comparison


@attrs.frozen
class Mode:
    quick: bool = False
    check: bool = False


Group = Callable[[Mode, set[str]], list[Comparison]]


def _core(mode: Mode, names: set[str]) -> list[Comparison]:
    quick = mode.quick
    benches = {
        "overhead": lambda: core.overhead(quick=quick),
        "streaming": lambda: core.streaming(quick=quick),
        "streaming-bounded": lambda: core.streaming(quick=quick, bounded=True),
        "scripted-cancel": lambda: core.cancel_latency(quick=quick),
    }
    return [trio.run(bench) for name, bench in benches.items() if name in names]


def _peers(mode: Mode, names: set[str]) -> list[Comparison]:
    benches = {"peer-overhead": peers.overhead, "peer-streaming": peers.streaming}
    return [bench(quick=mode.quick) for name, bench in benches.items() if name in names]


def _scale(mode: Mode, names: set[str]) -> list[Comparison]:
    if mode.check:
        return scale.scale(quick=False, largest=CHECK_SCALE, smallest=300, repeats=5)
    return scale.scale(quick=mode.quick)


def _tools(mode: Mode, names: set[str]) -> list[Comparison]:
    results = []
    if "tools-overhead" in names:
        results.append(trio.run(lambda: tools.overhead(quick=mode.quick)))
    if "peer-tools" in names:
        results.append(tools.peer(quick=mode.quick))
    if "tools-cancel" in names:
        results.append(trio.run(lambda: tools.cancel_latency(quick=mode.quick)))
    if "approvals" in names:
        results.append(trio.run(lambda: tools.approval_latency(quick=mode.quick)))
    return results


def _local(mode: Mode, names: set[str]) -> list[Comparison]:
    return trio.run(lambda: local.run_all(quick=mode.quick, only=names))


def _mcp(mode: Mode, names: set[str]) -> list[Comparison]:
    return trio.run(lambda: mcp.run_all(quick=mode.quick, only=names))


def _otel(mode: Mode, names: set[str]) -> list[Comparison]:
    processors = {"otel": "batch", "otel-simple": "simple"}
    return [
        trio.run(functools.partial(otel.overhead, quick=mode.quick, processor=processor))
        for name, processor in processors.items()
        if name in names
    ]


def _serve(mode: Mode, names: set[str]) -> list[Comparison]:
    return trio.run(lambda: serve.run_all(quick=mode.quick, only=names))


def _temporal(mode: Mode, names: set[str]) -> list[Comparison]:
    return temporal.run_all(quick=mode.quick, only=names) + temporal_waits.run_all(
        quick=mode.quick, only=names
    )


def _agents(mode: Mode, names: set[str]) -> list[Comparison]:
    results = []
    if "agents-subagent" in names:
        results.append(trio.run(lambda: agents.subagent(quick=mode.quick)))
    if "agents-cancel" in names:
        results.append(trio.run(lambda: agents.tree_cancel(quick=mode.quick)))
    if "agents-peer" in names:
        results.append(agents.peer(quick=mode.quick))
    return results


def _protocols(mode: Mode, names: set[str]) -> list[Comparison]:
    return trio.run(lambda: protocols.run_all(quick=mode.quick, only=names))


def _evals(mode: Mode, names: set[str]) -> list[Comparison]:
    return evals.run_all(quick=mode.quick, only=names)


def _guardrails(mode: Mode, names: set[str]) -> list[Comparison]:
    return trio.run(lambda: guardrails.run_all(quick=mode.quick, only=names))


def _resilience(mode: Mode, names: set[str]) -> list[Comparison]:
    return trio.run(lambda: resilience.run_all(quick=mode.quick, only=names))


def _remote(mode: Mode, names: set[str]) -> list[Comparison]:
    return trio.run(lambda: remote.run_all(quick=mode.quick, only=names))


#: Group -> (its benchmarks, the runner). Groups run in this order.
GROUPS: dict[str, tuple[tuple[str, ...], Group]] = {
    "core": (("overhead", "streaming", "streaming-bounded", "scripted-cancel"), _core),
    "peers": (("peer-overhead", "peer-streaming"), _peers),
    "scale": (("scale",), _scale),
    "tools": (("tools-overhead", "peer-tools", "tools-cancel", "approvals"), _tools),
    "otel": (("otel", "otel-simple"), _otel),
    "mcp": (("mcp-call", "mcp-cancel"), _mcp),
    "local": (
        (
            "local-decode",
            "local-cancel-decode",
            "local-cancel-prefill",
            "local-ttft",
            "local-ttft-busy",
        ),
        _local,
    ),
    "remote": (("remote-chunks", "remote-cancel"), _remote),
    "agents": (("agents-subagent", "agents-cancel", "agents-peer"), _agents),
    "resilience": (
        ("resilience-limits", "resilience-fallback", "resilience-hedge", "resilience-limiter"),
        _resilience,
    ),
    "guardrails": (
        (
            "guardrails-trip",
            "guardrails-trip-local",
            "guardrails-noop",
            "guardrails-partial",
        ),
        _guardrails,
    ),
    "evals": (("evals-rate", "evals-memory", "evals-resume"), _evals),
    "serve": (("serve-events", "serve-stop"), _serve),
    "protocols": (
        (
            "protocols-chunks",
            "protocols-stop-openai",
            "protocols-stop-mcp",
            "protocols-stop-a2a",
        ),
        _protocols,
    ),
    "temporal": (
        (
            "temporal-rate-1",
            "temporal-rate-2",
            "temporal-latency",
            "temporal-cancel",
            "temporal-approve",
            "temporal-replay",
        ),
        _temporal,
    ),
}
BENCHMARKS = [name for names, _ in GROUPS.values() for name in names]

#: ``--check``: the cheap in-process figures, for catching a regression in a couple of minutes.
CHECK = ("overhead", "streaming", "streaming-bounded", "scripted-cancel", "scale")
#: The check's scale curve: from 300 (at 100 the CPU time per run is mostly noise) to this.
CHECK_SCALE = 2_000
#: How far (relative) a figure may miss its target in ``--check`` before it counts as a
#: regression: these run on shared machines, where a few percent is noise.
CHECK_MARGIN = 0.10


def _target(result: Comparison) -> tuple[str, float]:
    """The comparison and the bound of a target such as ``<= 2.0x``."""
    op, bound = result.target.split()
    return op, float(bound.removesuffix("x"))


def within_margin(result: Comparison, margin: float) -> bool:
    """Whether the figure is sound and its ratio meets the target, or misses it by no more
    than ``margin``. A figure with an invalid sample or a reported problem, or one that is
    not a finite number, is a miss whatever its ratio."""
    if unsound(result):
        return False
    op, bound = _target(result)
    if op == "<=":
        return result.ratio <= bound * (1 + margin)
    return result.ratio >= bound * (1 - margin)


def unsound(result: Comparison) -> list[str]:
    """Why a figure cannot be trusted, whatever its value (empty: it can)."""
    detail = result.detail
    why = [f"invalid sample: {reason}" for reason in detail.get("invalid_reasons") or ()]
    why += [f"problem: {problem}" for problem in detail.get("problems") or ()]
    if detail.get("valid", 0) != detail.get("attempted", 0):
        why.append(f"only {detail['valid']} of {detail['attempted']} samples valid")
    # Every value finite; a baseline above zero (a ratio is formed against it). A candidate
    # may be zero or below: a difference such as tools-overhead is, within noise.
    for name in ("candidate", "baseline", "ratio"):
        value = getattr(result, name)
        if not math.isfinite(value) or (name == "baseline" and value <= 0):
            why.append(f"{name} is {value}")
    return why


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--only",
        action="append",
        choices=[*GROUPS, *BENCHMARKS],
        metavar="NAME",
        help=f"a benchmark or a group (repeatable): {', '.join([*GROUPS, *BENCHMARKS])}",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run (figures not meaningful)")
    parser.add_argument(
        "--check",
        action="store_true",
        help=(
            f"the cheap in-process figures ({', '.join(CHECK)} at {CHECK_SCALE:,}); exit 1 "
            f"when one misses its target by more than {CHECK_MARGIN:.0%}"
        ),
    )
    parser.add_argument("--json", type=Path, default=Path("bench/results/latest.json"))
    parser.add_argument("--charts", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    wanted: set[str] = set()
    for name in args.only or (CHECK if args.check else BENCHMARKS):
        wanted.update(GROUPS[name][0] if name in GROUPS else (name,))
    mode = Mode(quick=args.quick, check=args.check)

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 150)
    results: list[Comparison] = []
    timings: dict[str, float] = {}
    for group, (names, run) in GROUPS.items():
        chosen = wanted.intersection(names)
        if chosen:
            console.print(f"[dim]running {group}: {', '.join(sorted(chosen))}[/dim]")
            started = time.perf_counter()
            results += run(mode, chosen)
            timings[group] = time.perf_counter() - started

    console.print(_table(results, quick=args.quick))
    for r in results:
        console.print(f"  [bold]{r.key}[/bold]: {r.name}")
    payload = {
        "quick": args.quick,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "seconds_per_group": timings,
        "results": [r.to_dict() for r in results],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    # Strict JSON: a figure that is not a number is written as null, never as Infinity/NaN.
    args.json.write_text(json.dumps(_finite(payload), indent=2, allow_nan=False))
    console.print(f"wrote {args.json}")
    for chart in write_charts(results, args.charts):
        console.print(f"wrote {chart}")
    if args.check:
        return _confirm(results, mode, console)
    if args.quick:
        # Quick figures are not judged, but a broken benchmark is: every figure must be
        # sound (all samples valid, no problem, a finite value).
        broken = [(r.key, why) for r in results for why in unsound(r)]
        for key, why in broken:
            console.print(f"[red]broken[/red] {key}: {why}")
        return 1 if broken else 0
    return 0 if all(r.passed and not unsound(r) for r in results) else 1


def measure_again(first: Comparison, mode: Mode) -> Comparison:
    """The same figure, measured once more."""
    bench = "scale" if first.key.startswith("scale-") else first.key  # one run, two figures
    run = next(run for names, run in GROUPS.values() if bench in names)
    return next(r for r in run(mode, {bench}) if r.key == first.key)


def _confirm(
    results: list[Comparison],
    mode: Mode,
    console: Console,
    measure: Callable[[Comparison, Mode], Comparison] = measure_again,
) -> int:
    """``--check``: a figure that misses its target is measured again; only a miss in both
    runs is a regression (a shared machine's noise can exceed the margin once). A figure
    with an invalid sample or a problem is a miss."""
    missed = [r for r in results if not within_margin(r, CHECK_MARGIN)]
    confirmed = []
    for first in missed:
        for why in unsound(first):
            console.print(f"{first.key}: {why}")
        again = measure(first, mode)
        for why in unsound(again):
            console.print(f"{first.key} (again): {why}")
        verdict = "confirmed" if not within_margin(again, CHECK_MARGIN) else "not confirmed"
        console.print(
            f"{first.key}: ratio {first.ratio:.2f}x, target {first.target}; measured again: "
            f"{again.ratio:.2f}x ({verdict}, margin {CHECK_MARGIN:.0%})"
        )
        if verdict == "confirmed":
            confirmed.append(again)
    for r in confirmed:
        console.print(f"[red]regression[/red] {r.key}: missed its target twice")
    return 1 if confirmed else 0


def _table(results: list[Comparison], *, quick: bool) -> Table:
    title = "agtl benchmarks" + (
        " (quick: checks they run, figures not meaningful)" if quick else ""
    )
    table = Table(title=title, title_justify="left")
    table.add_column("benchmark", no_wrap=True)
    table.add_column("agtl", justify="right")
    table.add_column("baseline", justify="right")
    table.add_column("unit")
    table.add_column("ratio", justify="right")
    table.add_column("target")
    table.add_column("", justify="center")
    table.add_column("notes")
    for r in results:
        table.add_row(
            r.key,
            _number(r.candidate),
            _number(r.baseline) + (" (const)" if r.baseline_kind == "constant" else ""),
            r.unit,
            f"{r.ratio:.2f}x",
            r.target,
            "[green]PASS[/green]" if r.passed else "[red]FAIL[/red]",
            _notes(r),
        )
    return table


def _number(value: float) -> str:
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _notes(result: Comparison) -> str:
    detail = result.detail
    if "samples_ms" in detail:
        note = (
            f"p50 {detail['p50_ms']:.2f} ms, p99 {detail['p99_ms']:.2f} ms, "
            f"valid {detail['valid']}/{detail['attempted']}"
        )
        if detail.get("invalid_reasons"):
            note += f" (invalid: {'; '.join(detail['invalid_reasons'])})"
        if "decode_step_ms" in detail:
            note += f"; raw decode step {detail['decode_step_ms']:.1f} ms"
        return note
    if "ratio_ci95" in detail:
        low, high = detail["ratio_ci95"]
        return f"ratio 95% CI [{low:.3f}, {high:.3f}], {detail['rounds']} ABBA rounds"
    if "peak_large_bytes" in detail:
        return (
            f"peak {detail['peak_small_bytes'] / 1e6:.1f} MB vs "
            f"{detail['peak_large_bytes'] / 1e6:.1f} MB at {detail['cases']:,} cases"
        )
    if "file_bytes" in detail:
        return f"{detail['lines']:,} lines, {detail['file_bytes'] / 1e6:.1f} MB"
    if "peer_rates" in detail:
        return f"{detail['cases']:,} cases per batch, ABBA"
    if "sync_added_us" in detail:
        return (
            f"{detail['with_guardrail_us']:.0f} vs {detail['without_us']:.0f} us per call; "
            f"a plain-function guardrail (run at once) adds {detail['sync_added_us']:.1f} us"
        )
    if "parse_curve" in detail:
        return "us/piece, ours vs re-parsing: " + ", ".join(
            f"{size} {p['incremental_us']:.1f} vs {p['reparse_us']:.1f}"
            for size, p in detail["parse_curve"].items()
        )
    if "curve" in detail:
        return ", ".join(f"{p['n']:,}: {p['agtl_cpu_us']:.0f} us" for p in detail["curve"])
    if "raw_trio_bytes" in detail:
        return f"raw trio {detail['raw_trio_bytes']:,.0f} B; wall {detail['wall_s']:.1f} s"
    if "added_us" in detail:
        return f"the loop adds {detail['added_us']:.1f} us per tool call"
    if "off_hook_ns" in detail:
        return (
            f"on {detail['on_us']:.0f} vs off {detail['off_us']:.0f} us; off: the trace "
            f"lookup costs {detail['off_hook_ns']:.0f} ns per execution ({detail['off_share']:.2%})"
        )
    if "worst_load" in detail:
        loads = sorted({key.split("_")[0] for key in detail if key.endswith("_default_ms")})
        per_load = "; ".join(
            f"{load} {detail[f'{load}_default_ms']:.0f}/{detail[f'{load}_every_core_ms']:.0f}/"
            f"{detail[f'{load}_one_ms']:.0f}"
            for load in loads
        )
        return (
            f"ms default/every core/one: {per_load}; worst {detail['worst_load']}, idle "
            f"{detail['idle_ratio']:.2f}x"
        )
    if "workers_used" in detail:
        problems = "; ".join(detail["problems"]) or "none"
        return (
            f"{detail['executions']:,} executions, all checked; {detail['workers_used']} "
            f"worker(s) ran them; ceiling (instant model) {detail['ceiling_exec_per_s']:.1f} "
            f"exec/s; in-process {detail['in_process_exec_per_s']:.1f} exec/s; "
            f"problems: {problems}"
        )
    if "after_cancel_ms" in detail:
        return f"warm {detail['warm_ms']:.1f} ms, after a cancel {detail['after_cancel_ms']:.1f} ms"
    return ""


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float as None, ready for strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


if __name__ == "__main__":
    raise SystemExit(main())
