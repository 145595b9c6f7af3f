"""agtl.evals at scale: cases per second against pydantic-evals, memory over a long run, and
what resuming costs.

* evals-rate: the same 1,000 cases (200 with ``--quick``), 64 at once, with the same instant
  workflow (it returns its input) and the same scorer (the output equals the expected
  value): agtl's ``evals.run`` writing every case's line to a file, against pydantic-evals'
  ``Dataset.evaluate`` keeping its report in memory, in alternating ``trio.run`` and
  ``asyncio.run`` batches (ABBA). agtl's cases/s over pydantic-evals': >= 10x. Every batch
  is checked: every case scored, every score a pass;
* evals-memory: the peak traced memory of a run of 10,000 cases (2,000 with ``--quick``)
  beside one of a tenth as many, both writing their lines to a file: the bytes each
  further case adds while the run goes, against a constant 1 KB. The notes give both peaks;
* evals-resume: reading back which of 10,000 lines (each a whole Result) are finished, as
  ``--resume`` does before a run starts, against a constant 0.5 s.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import trio
from pydantic_evals import Case as PeerCase
from pydantic_evals import Dataset as PeerDataset
from pydantic_evals.evaluators import EqualsExpected

from agtl import Session, evals
from agtl.testing import Reply, ScriptedProvider
from bench._harness import Comparison, abba

RATE_RATIO = 10.0
MEMORY_BUDGET_BYTES = 1024
RESUME_BUDGET_S = 0.5
CONCURRENCY = 64


async def echo(session: Session, value: Any) -> Any:
    """The instant workflow: its input back, no model call."""
    return value


async def peer_echo(value: Any) -> Any:
    return value


def _cases(n: int) -> list[evals.Case]:
    return [evals.Case(f"c{i}", f"answer {i}", f"answer {i}") for i in range(n)]


def _agtl_batch(n: int, folder: Path) -> float:
    """agtl: cases per second for one run of ``n`` cases, its lines written to a new file."""
    provider = ScriptedProvider(Reply("unused"))
    out = folder / f"run-{time.monotonic_ns()}.jsonl"

    async def go() -> evals.EvalRun:
        return await evals.run(
            _cases(n), echo, provider, scorers=[evals.exact()], concurrency=CONCURRENCY, out=out
        )

    started = time.perf_counter()
    finished = trio.run(go)
    took = time.perf_counter() - started
    report = evals.EvalReport.read(out)
    assert finished.progress.succeeded == n, finished.progress
    assert report.scorers[0].n == n, report.scorers
    assert report.scorers[0].value == 1.0, report.scorers
    out.unlink()
    return n / took


def _peer_batch(n: int) -> float:
    """pydantic-evals: cases per second for one ``evaluate`` of ``n`` cases."""
    dataset = PeerDataset(
        cases=[PeerCase(name=c.id, inputs=c.input, expected_output=c.expected) for c in _cases(n)],
        evaluators=[EqualsExpected()],
        name="echo",
    )

    async def go() -> Any:
        return await dataset.evaluate(peer_echo, max_concurrency=CONCURRENCY, progress=False)

    started = time.perf_counter()
    report = asyncio.run(go())
    took = time.perf_counter() - started
    assert len(report.cases) == n
    assert not report.failures
    assert all(case.assertions["EqualsExpected"].value is True for case in report.cases)
    return n / took


def rate(*, quick: bool) -> Comparison:
    n = 200 if quick else 1000
    rates: dict[str, list[float]] = {"agtl": [], "peer": []}
    with tempfile.TemporaryDirectory(prefix="agtl-bench-evals-") as folder:
        _agtl_batch(50, Path(folder))  # warm both up
        _peer_batch(50)
        for side in abba(2 if quick else 6, "agtl", "peer"):
            gc.collect()
            rates[side].append(_agtl_batch(n, Path(folder)) if side == "agtl" else _peer_batch(n))
    ours, theirs = statistics.median(rates["agtl"]), statistics.median(rates["peer"])
    return Comparison(
        key="evals-rate",
        name=f"eval cases/s at concurrency {CONCURRENCY}, instant workflow "
        "(agtl writing every line vs pydantic-evals in memory)",
        unit="cases/s",
        candidate=ours,
        baseline=theirs,
        ratio=ours / theirs,
        target=f">= {RATE_RATIO:g}x",
        passed=ours / theirs >= RATE_RATIO,
        detail={"cases": n, "agtl_rates": rates["agtl"], "peer_rates": rates["peer"]},
    )


def _peak(n: int, folder: Path) -> int:
    """The peak traced memory (bytes) of a run of ``n`` cases writing to a file; the
    dataset is made before tracing starts (it is the input, not what the run keeps)."""
    provider = ScriptedProvider(Reply("unused"))
    out = folder / f"memory-{n}.jsonl"
    cases = _cases(n)

    async def go() -> evals.EvalRun:
        return await evals.run(
            cases, echo, provider, scorers=[evals.exact()], concurrency=CONCURRENCY, out=out
        )

    gc.collect()
    tracemalloc.start()
    try:
        finished = trio.run(go)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert finished.progress.succeeded == n
    return peak


def memory(*, quick: bool) -> Comparison:
    large = 2000 if quick else 10_000
    small = large // 10
    with tempfile.TemporaryDirectory(prefix="agtl-bench-evals-") as folder:
        low = _peak(small, Path(folder))
        high = _peak(large, Path(folder))
    per_case = max(0.0, (high - low) / (large - small))
    return Comparison(
        key="evals-memory",
        name=f"memory each further finished case adds to a run ({small:,} vs {large:,} cases)",
        unit="B/case",
        candidate=per_case,
        baseline=MEMORY_BUDGET_BYTES,
        ratio=per_case / MEMORY_BUDGET_BYTES,
        target="<= 1.0x",
        passed=per_case <= MEMORY_BUDGET_BYTES,
        detail={"peak_small_bytes": low, "peak_large_bytes": high, "cases": large},
        baseline_kind="constant",
    )


def resume(*, quick: bool) -> Comparison:
    n = 10_000
    with tempfile.TemporaryDirectory(prefix="agtl-bench-evals-") as folder:
        out = Path(folder) / "run.jsonl"
        provider = ScriptedProvider(Reply("unused"))
        # A real run's lines: every one holds a whole Result.
        trio.run(lambda: evals.run(_cases(n), echo, provider, concurrency=CONCURRENCY, out=out))
        size = out.stat().st_size
        times = []
        for _ in range(3 if quick else 7):
            started = time.perf_counter()
            done = evals.finished_keys(out)
            times.append(time.perf_counter() - started)
            assert len(done) == n
    took = statistics.median(times)
    return Comparison(
        key="evals-resume",
        name=f"resume: reading which of {n:,} lines are finished (vs a constant 0.5 s)",
        unit="s",
        candidate=took,
        baseline=RESUME_BUDGET_S,
        ratio=took / RESUME_BUDGET_S,
        target="<= 1.0x",
        passed=took <= RESUME_BUDGET_S,
        detail={"lines": n, "file_bytes": size},
        baseline_kind="constant",
    )


def run_all(*, quick: bool, only: set[str] | None = None) -> list[Comparison]:
    figures = []
    for key, measure in (("evals-rate", rate), ("evals-memory", memory), ("evals-resume", resume)):
        if only is None or key in only:
            started = time.perf_counter()
            figure = measure(quick=quick)
            figure.detail["bench_seconds"] = time.perf_counter() - started
            figures.append(figure)
    return figures
