"""Temporal benchmarks: a local dev server and `agtl worker` processes, against in-process runs.

The work is the same on both sides: one workflow with one LLM call to a scripted model that
answers after a fixed time. Every Result is checked: succeeded, the right value, run once
(attempt 1), and with 2 workers, both ran executions.

* ``temporal-rate-1`` / ``temporal-rate-2``: executions per second with 1 and 2 worker
  processes (``SLOTS`` executions at a time each) for calls of ``RATE_MODEL_SECONDS`` (a short
  LLM reply), against the raw Temporal SDK doing the same work (a workflow running one
  activity that waits as long, on as many raw worker processes with as many slots: see
  ``bench/_raw_temporal.py``). The ratio is raw rate / agtl rate. The calls are short on
  purpose: with long ones every path waits on the model and any overhead hides. The notes add
  the ceiling (an instant model, where only Temporal's own cost and agtl's count) and the
  same executions in this process on trio, which no path through a server reaches on one
  machine, where the server, the workers and the client share its cores. The dev server
  keeps its state in memory here (with its SQLite file, disk syncs cap it lower);
* ``temporal-latency``: one execution at a time (a ``LATENCY_MODEL_SECONDS`` call), submit to
  Result, against the same execution in-process; the figure is the added latency's p99 (p50
  in the notes) against a constant budget;
* ``temporal-cancel``: a Temporal cancel of an execution whose reply is streaming, from
  ``handle.cancel()`` to its canceled Result, p99 against a constant budget: the worker's
  heartbeat interval (a cancel lands with a heartbeat's reply) plus round trips. Each cancel
  is fired at a random point of the heartbeat cycle, and a sample counts only if the Result
  shows the cancel landed mid-stream (``canceled``, source ``signal`` with the reason given,
  partial text kept, the one call stopped as cancelled).
"""

from __future__ import annotations

import asyncio
import gc
import math
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import trio
from temporalio.client import Client

import agtl
from agtl import temporal
from agtl.temporal import ProviderSpec
from agtl.temporal.testing import WorkerProcess, dev_server
from agtl.testing import Reply, ScriptedProvider
from bench._harness import (
    CancelSamples,
    Comparison,
    latency_detail,
    mid_stream_problem,
    percentile,
)
from bench._raw_temporal import submit_all

ROOT = Path(__file__).resolve().parent.parent
RATE_MODEL_SECONDS = 0.1
LATENCY_MODEL_SECONDS = 0.1
SLOTS = 16
LATENCY_BUDGET_MS = 150.0
#: The worker's heartbeat interval (``agtl worker`` default, 0.5 s) plus 250 ms of round trips.
CANCEL_BUDGET_MS = 750.0


def _spec(seconds: float) -> ProviderSpec:
    return ProviderSpec.factory("bench.temporal:model", seconds=seconds)


def model(seconds: float) -> agtl.Provider:
    """The scripted model both sides use (the workers build it from a spec naming this)."""
    return ScriptedProvider(respond=lambda request: Reply("ok", first_delay=seconds))


async def one_call(session: agtl.Session, input: dict[str, Any]) -> str:
    return (await session.generate_text(prompt=f"question {input['i']}")).text


def streaming_model() -> agtl.Provider:
    """A reply that streams for a minute unless it is cancelled."""
    return ScriptedProvider(
        respond=lambda request: Reply([f"w{i} " for i in range(6000)], delay=0.01)
    )


async def long_reply(session: agtl.Session) -> str:
    return (await session.generate_text(prompt="tell a long story")).text


# -- in-process ------------------------------------------------------------------------------


async def _in_process_rate(count: int, slots: int, seconds: float) -> float:
    provider = model(seconds)
    limiter = trio.CapacityLimiter(slots)
    results: list[agtl.Result[Any]] = []

    async def run(i: int) -> None:
        async with limiter:
            results.append(await provider.simple_execution(_bound(i)))

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(run, i)
    elapsed = time.perf_counter() - start
    assert all(r.succeeded and r.value == "ok" for r in results)
    assert len(results) == count
    return count / elapsed


async def _in_process_latency(samples: int) -> list[float]:
    provider = model(LATENCY_MODEL_SECONDS)
    seconds = []
    for i in range(samples):
        start = time.perf_counter()
        result = await provider.simple_execution(_bound(i))
        seconds.append(time.perf_counter() - start)
        assert result.succeeded
    return seconds


def _bound(i: int) -> Any:
    async def fn(session: agtl.Session) -> str:
        return await one_call(session, {"i": i})

    return fn


# -- through Temporal ------------------------------------------------------------------------


def _raw_rate(address: str, workers: int, count: int) -> tuple[float, list[str]]:
    """Executions/s of the same work on the raw SDK: as many raw worker processes, as many
    slots each, the same call time; (rate, problems)."""
    queue = f"raw-{uuid.uuid4().hex[:8]}"
    started = []
    try:
        for _ in range(workers):
            process = subprocess.Popen(
                [sys.executable, "-m", "bench._raw_temporal", address, queue, str(SLOTS)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            started.append(WorkerProcess(process))
            started[-1].wait_for_line("serving task queue", 120)

        async def measure(n: int, tag: str) -> tuple[float, list[Any]]:
            client = await Client.connect(address)
            begin = time.perf_counter()
            answers = await submit_all(client, queue, n, RATE_MODEL_SECONDS, tag=tag)
            elapsed = time.perf_counter() - begin
            del client
            gc.collect()
            return n / elapsed, answers

        asyncio.run(measure(2 * SLOTS * workers, "warm"))  # as the agtl side warms up
        rate, answers = asyncio.run(measure(count, "run"))
    finally:
        for worker in started:
            worker.stop()
    wrong = sum(1 for answer in answers if answer != "ok")
    return rate, [f"{wrong} raw answers wrong"] if wrong or len(answers) != count else []


def _check(results: list[agtl.Result[Any]], count: int) -> list[str]:
    problems = []
    if len(results) != count:
        problems.append(f"{len(results)} results for {count} executions")
    for result in results:
        if not result.succeeded or result.value != "ok":
            problems.append(f"{result.status.value}: {result.error or result.cancel}")
        elif result.summary.metadata.get("temporal_attempt") != 1:
            problems.append("an execution ran more than once")
    return sorted(set(problems))


async def _temporal_rate(
    address: str, queue: str, count: int, seconds: float
) -> tuple[float, list[str], int]:
    client = await temporal.connect(address)
    start = time.perf_counter()
    handles = await asyncio.gather(
        *(
            temporal.submit(
                client,
                "bench.temporal:one_call",
                {"i": i},
                provider=_spec(seconds),
                task_queue=queue,
                timeout=120,
            )
            for i in range(count)
        )
    )
    results = list(await asyncio.gather(*(h.result() for h in handles)))
    elapsed = time.perf_counter() - start
    workers = {r.summary.metadata.get("temporal_worker") for r in results}
    del client, handles
    gc.collect()
    return count / elapsed, _check(results, count), len(workers)


async def _temporal_latency(
    address: str, queue: str, samples: int
) -> tuple[list[float], list[str | None]]:
    client = await temporal.connect(address)
    seconds, results = [], []
    for i in range(samples):
        start = time.perf_counter()
        handle = await temporal.submit(
            client,
            "bench.temporal:one_call",
            {"i": i},
            provider=_spec(LATENCY_MODEL_SECONDS),
            task_queue=queue,
            timeout=120,
        )
        results.append(await handle.result())
        seconds.append(time.perf_counter() - start)
    del client
    gc.collect()
    # Each sample is judged on its own Result: one problem per bad sample, never merged.
    return seconds, [next(iter(_check([r], 1)), None) for r in results]


async def _temporal_cancel(address: str, queue: str, samples: int) -> CancelSamples:
    rng = random.Random(7)
    client = await temporal.connect(address)
    measured = CancelSamples()
    for _ in range(samples):
        handle = await temporal.submit(
            client,
            "bench.temporal:long_reply",
            provider=ProviderSpec.factory("bench.temporal:streaming_model"),
            task_queue=queue,
            timeout=120,
        )
        delivered, deadline = 0, time.monotonic() + 30
        while not delivered and time.monotonic() < deadline:
            progress = await handle.progress()
            delivered = 0 if progress is None else progress.streamed_chars
            await asyncio.sleep(0.02)
        await asyncio.sleep(rng.uniform(0.0, 0.5))  # any point of the heartbeat cycle
        start = time.perf_counter()
        await handle.cancel(reason="bench cancel")
        result = await handle.result()
        measured.add(time.perf_counter() - start, _cancel_problem(result, delivered))
    del client
    gc.collect()
    return measured


def _cancel_problem(result: agtl.Result[Any], delivered: int) -> str | None:
    """Why ``result`` is not the Temporal cancel, with its reason, of its one call mid-stream
    (None: it is); ``delivered`` is how much the heartbeats showed streamed before the cancel."""
    problem = mid_stream_problem(result, delivered=delivered, after=1)
    cancel = result.cancel
    if problem is None and (
        cancel is None
        or cancel.source is not agtl.CancelSource.SIGNAL
        or "bench cancel" not in (cancel.reason or "")
    ):
        return f"canceled by something else: {cancel}"
    return problem


def run_all(*, quick: bool, only: set[str] | None = None) -> list[Comparison]:
    count = 96 if quick else 1000
    ceiling_count = 64 if quick else 500
    latency_samples = 10 if quick else 100
    cancel_samples = 5 if quick else 40
    figures: list[Comparison] = []
    with dev_server(persist=False) as address:
        for workers in (1, 2):
            key = f"temporal-rate-{workers}"
            if only is not None and key not in only:
                continue
            queue = f"bench-{uuid.uuid4().hex[:8]}"
            started = [
                WorkerProcess.start(address, queue, concurrency=SLOTS, paths=[ROOT])
                for _ in range(workers)
            ]
            try:
                warm = 2 * SLOTS * workers
                asyncio.run(_temporal_rate(address, queue, warm, 0.0))
                ceiling, ceiling_problems, _ = asyncio.run(
                    _temporal_rate(address, queue, ceiling_count, 0.0)
                )
                rate, problems, used = asyncio.run(
                    _temporal_rate(address, queue, count, RATE_MODEL_SECONDS)
                )
            finally:
                for worker in started:
                    worker.stop()
            problems += ceiling_problems
            if used != workers:
                problems.append(f"{used} of {workers} workers ran executions")
            raw, raw_problems = _raw_rate(address, workers, count)
            problems += raw_problems
            in_process = trio.run(_in_process_rate, count, SLOTS * workers, RATE_MODEL_SECONDS)
            ratio = raw / rate
            figures.append(
                Comparison(
                    key=key,
                    name=f"executions/s through Temporal, {workers} worker(s) x {SLOTS} slots, "
                    f"vs the raw Temporal SDK doing the same (one {RATE_MODEL_SECONDS:g} s call "
                    "each)",
                    unit="exec/s",
                    candidate=rate,
                    baseline=raw,
                    ratio=ratio,
                    target="<= 1.5x",
                    passed=not problems and ratio <= 1.5,
                    detail={
                        "executions": count,
                        "problems": problems,
                        "workers_used": used,
                        "ceiling_exec_per_s": ceiling,
                        "in_process_exec_per_s": in_process,
                    },
                )
            )
        if only is None or "temporal-latency" in only:
            queue = f"bench-{uuid.uuid4().hex[:8]}"
            worker = WorkerProcess.start(address, queue, concurrency=SLOTS, paths=[ROOT])
            try:
                asyncio.run(_temporal_latency(address, queue, 5))  # warm up
                through, judged = asyncio.run(_temporal_latency(address, queue, latency_samples))
            finally:
                worker.stop()
            local = statistics.median(trio.run(_in_process_latency, latency_samples))
            measured = CancelSamples()
            for seconds, problem in zip(through, judged, strict=True):
                measured.add(max(0.0, seconds - local), problem)
            added = measured.valid
            p99 = percentile(added, 0.99) * 1000 if added else math.inf
            figures.append(
                Comparison(
                    key="temporal-latency",
                    name="added latency per execution through Temporal (submit to Result), p99",
                    unit="ms",
                    candidate=p99,
                    baseline=LATENCY_BUDGET_MS,
                    ratio=p99 / LATENCY_BUDGET_MS,
                    target="<= 1.0x",
                    passed=not measured.invalid and p99 <= LATENCY_BUDGET_MS,
                    detail=latency_detail(
                        added,
                        valid=len(measured.valid),
                        attempted=measured.attempted,
                        invalid_reasons=sorted(set(measured.invalid)),
                        in_process_ms=local * 1000,
                    ),
                    baseline_kind="constant",
                )
            )
        if only is None or "temporal-cancel" in only:
            queue = f"bench-{uuid.uuid4().hex[:8]}"
            worker = WorkerProcess.start(address, queue, concurrency=2, paths=[ROOT])
            try:
                cancels = asyncio.run(_temporal_cancel(address, queue, cancel_samples))
            finally:
                worker.stop()
            figures.append(
                cancels.figure(
                    key="temporal-cancel",
                    name="Temporal cancel of a streaming execution, handle.cancel() to its "
                    "canceled Result, p99",
                    budget_ms=CANCEL_BUDGET_MS,
                    baseline_kind="constant",
                    heartbeat_every_ms=500.0,
                )
            )
    return figures
