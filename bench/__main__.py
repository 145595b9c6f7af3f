"""Run the benchmarks: ``python -m bench [--only NAME] [--quick] [--json PATH]``."""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from bench import core, local, remote
from bench._harness import Comparison

CORE: dict[str, Callable[[bool], Awaitable[Comparison]]] = {
    "overhead": lambda quick: core.overhead(quick=quick),
    "streaming": lambda quick: core.streaming(quick=quick),
    "streaming-rendezvous": lambda quick: core.streaming(quick=quick, buffer=0),
}
LOCAL = {"local-decode", "local-cancel-decode", "local-cancel-prefill", "local-ttft"}
REMOTE = {"remote-chunks", "remote-cancel"}
BENCHMARKS = sorted([*CORE, *LOCAL, *REMOTE])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", choices=BENCHMARKS, action="append")
    parser.add_argument("--quick", action="store_true", help="a smoke run (figures not meaningful)")
    parser.add_argument("--json", type=Path, default=Path("bench/results/latest.json"))
    args = parser.parse_args(argv)
    names = args.only or BENCHMARKS

    async def run_all() -> list[Comparison]:
        results = [await CORE[name](args.quick) for name in CORE if name in names]
        wanted = LOCAL & set(names)
        if wanted:
            results += await local.run_all(quick=args.quick, only=wanted)
        wanted = REMOTE & set(names)
        if wanted:
            results += await remote.run_all(quick=args.quick, only=wanted)
        return results

    results = trio.run(run_all)
    width = max(len(r.name) for r in results)
    print(f"{'benchmark':<{width}}  {'agtl':>12}  {'baseline':>12}  {'ratio':>7}  target   ok")
    for r in results:
        mark = "PASS" if r.passed else "FAIL"
        print(
            f"{r.name:<{width}}  {r.candidate:>12.1f}  {r.baseline:>12.1f}  "
            f"{r.ratio:>6.2f}x  {r.target:<8} {mark}   ({r.unit})"
        )
    payload = {
        "quick": args.quick,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "results": [r.to_dict() for r in results],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2, default=_finite))
    print(f"wrote {args.json}")
    return 0 if args.quick or all(r.passed for r in results) else 1


def _finite(value: object) -> object:
    return None if isinstance(value, float) and not math.isfinite(value) else str(value)


if __name__ == "__main__":
    raise SystemExit(main())
