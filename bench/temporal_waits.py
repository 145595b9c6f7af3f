"""Executions on Temporal that wait for a person (a local dev server, one `agtl worker`).

* ``temporal-approve``: ``handle.approve()`` to the approved tool starting on the worker, p99
  against a constant 1 s. ``WAITING`` executions first all wait at once on a worker with a
  single slot; the slots they hold (activities pending across all of them, from Temporal's
  own description) must be 0, and a plain execution must still finish on that worker while
  they wait. Then each is approved in turn; a sample counts only if its tool ran exactly
  once, after the approval, and its Result succeeded with the record saying approved.
* ``temporal-replay``: agtl's own time to resume an execution whose journal holds 21
  finished calls (11 model calls, 10 of them asking for a tool call, and the 10 tool calls;
  the target speaks of 20), in process, from the journal's JSON form to the execution
  waiting at the request that made the earlier attempt stop: decoding, replaying every call
  and opening the request, against a constant 20 ms. A sample counts only if all 21 calls
  were replayed, none reached the model
  or ran a tool, and the execution reached the request.
"""

from __future__ import annotations

import asyncio
import gc
import json
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

import agtl
from agtl import temporal
from agtl.journal import entry_from_dict
from agtl.temporal import ProviderSpec
from agtl.temporal.testing import WorkerProcess, dev_server
from agtl.testing import Reply, ScriptedProvider
from bench._harness import CancelSamples, Comparison

ROOT = Path(__file__).resolve().parent.parent
APPROVE_BUDGET_MS = 1000.0
REPLAY_BUDGET_MS = 20.0
TOOL_STEPS = 10
REPLAYED_CALLS = 2 * TOOL_STEPS + 1


def model() -> agtl.Provider:
    """Asks for ``stamp`` once, then answers what the tool said."""

    def respond(request: agtl.GenerationRequest) -> Reply:
        if request.messages[-1].role is agtl.Role.TOOL:
            return Reply(f"done: {request.messages[-1].content}")
        return Reply("", tool_calls=[agtl.ToolCallRequest("s1", "stamp", {})])

    return ScriptedProvider(respond=respond)


async def stamped(session: agtl.Session, input: dict[str, Any]) -> str:
    """A tool that needs approval and writes the wall-clock time it started to a file."""
    path = input["stamps"]

    @agtl.tool(needs_approval=True)
    def stamp() -> str:
        """Record when the approved action started."""
        with open(path, "a", encoding="utf-8") as stamps:
            stamps.write(f"{time.time()}\n")
        return "stamped"

    return (await session.generate_text(prompt="act", tools=[stamp])).text


async def _approvals(address: str, queue: str, count: int, where: Path) -> CancelSamples:
    client = await temporal.connect(address)
    spec = ProviderSpec.factory("bench.temporal_waits:model")
    files = [where / f"stamps-{i}.txt" for i in range(count)]
    handles = await asyncio.gather(
        *(
            temporal.submit(
                client,
                "bench.temporal_waits:stamped",
                {"stamps": str(path)},
                provider=spec,
                task_queue=queue,
                timeout=600,
            )
            for path in files
        )
    )
    for handle in handles:
        deadline = time.monotonic() + 120
        while not await handle.pending():
            assert time.monotonic() < deadline, f"{handle.id} never waited"
            await asyncio.sleep(0.05)
    held = 0
    for handle in handles:
        described = await handle.workflow.describe()
        held += len(described.raw_description.pending_activities)
    other = await temporal.submit(
        client,
        "bench.temporal:one_call",
        {"i": 0},
        provider=ProviderSpec.factory("bench.temporal:model", seconds=0.0),
        task_queue=queue,
        timeout=60,
    )
    meanwhile = await asyncio.wait_for(other.result(), 60)
    samples = CancelSamples()
    for handle, path in zip(handles, files, strict=True):
        decided = time.time()
        await handle.approve("s1", by="bench")
        result = await handle.result()
        stamps = path.read_text().split() if path.exists() else []
        problem = None
        if held:
            problem = f"{held} worker slot(s) held by waiting executions"
        elif not meanwhile.succeeded:
            problem = "other work did not run while they waited"
        elif not result.succeeded or result.value != "done: stamped":
            problem = f"the execution did not succeed: {result.status.value}"
        elif len(stamps) != 1 or float(stamps[0]) < decided:
            problem = "the tool did not run exactly once, after the approval"
        elif (approval := result.summary.tool_calls[0].approval) is None or not approval.approved:
            problem = "the record does not say approved"
        started = float(stamps[0]) if stamps else decided
        samples.add(max(0.0, started - decided), problem)
    del client, handles
    gc.collect()
    return samples


def _replay_model(reached: list[int]) -> agtl.Provider:
    """Asks for ``look`` on each of the first ``TOOL_STEPS`` steps, then answers."""

    def respond(request: agtl.GenerationRequest) -> Reply:
        reached.append(1)
        step = sum(1 for m in request.messages if m.role is agtl.Role.TOOL)
        if step == TOOL_STEPS:
            return Reply("enough")
        return Reply("", tool_calls=[agtl.ToolCallRequest(f"c{step}", "look", {"n": step})])

    return ScriptedProvider(respond=respond)


def _workflow(ran: list[int]) -> Any:
    """The tool loop's calls, then a question for a person (where the attempt stops)."""

    @agtl.tool
    async def look(n: int) -> str:
        """Look something up."""
        ran.append(n)
        return f"found {n}"

    async def workflow(session: agtl.Session) -> str:
        await session.generate_text(prompt="go", tools=[look], max_steps=TOOL_STEPS + 1)
        return str(await session.request_input("go on?", bool))

    return workflow


async def _first_attempt() -> list[dict[str, Any]]:
    """The journal (JSON form) of an attempt that made its calls and then waited."""
    journal = agtl.CallJournal(on_wait=lambda request: None)
    execution = _replay_model([]).with_journal(journal).simple_execution(_workflow([]))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(execution.result)
        async for _request in execution.input_requests():
            execution.cancel("the attempt ends to wait")
    return [entry.to_dict() for entry in journal.entries]


def _setter(event: trio.Event) -> Callable[[Any], None]:
    return lambda _request: event.set()


async def replay_cost(*, quick: bool) -> Comparison:
    """Resume an execution with 20 finished calls up to its open request (agtl's own time)."""
    encoded = json.dumps(await _first_attempt())
    samples = CancelSamples()
    for _ in range(20 if quick else 200):
        reached: list[int] = []
        ran: list[int] = []
        opened = trio.Event()
        start = time.perf_counter()
        entries = [entry_from_dict(e) for e in json.loads(encoded)]
        journal = agtl.CallJournal(entries, on_wait=_setter(opened))
        execution = _replay_model(reached).with_journal(journal).simple_execution(_workflow(ran))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(execution.result)
            await opened.wait()
            elapsed = time.perf_counter() - start
            execution.cancel("measured")
        problem = None
        if journal.replayed != REPLAYED_CALLS or len(entries) != REPLAYED_CALLS:
            problem = f"{journal.replayed} of {len(entries)} calls replayed"
        elif reached or ran:
            problem = "a call reached the model or ran a tool"
        samples.add(elapsed, problem)
    return samples.figure(
        key="temporal-replay",
        name=f"resuming an execution with {REPLAYED_CALLS} finished calls up to its open "
        "request, agtl's own time (p99 vs a constant 20 ms)",
        budget_ms=REPLAY_BUDGET_MS,
        baseline_kind="constant",
    )


def run_all(*, quick: bool, only: set[str] | None = None) -> list[Comparison]:
    figures: list[Comparison] = []
    if only is None or "temporal-approve" in only:
        count = 10 if quick else 100
        with dev_server(persist=False) as address:
            queue = f"bench-{uuid.uuid4().hex[:8]}"
            worker = WorkerProcess.start(address, queue, concurrency=1, paths=[ROOT])
            try:
                with tempfile.TemporaryDirectory() as where:
                    samples = asyncio.run(_approvals(address, queue, count, Path(where)))
            finally:
                worker.stop()
        figures.append(
            samples.figure(
                key="temporal-approve",
                name=f"handle.approve() to the tool starting, {count} executions waiting at "
                "once on a 1-slot worker (0 slots held), p99 vs a constant 1 s",
                budget_ms=APPROVE_BUDGET_MS,
                baseline_kind="constant",
                waiting=count,
            )
        )
    if only is None or "temporal-replay" in only:
        figures.append(trio.run(lambda: replay_cost(quick=quick)))
    return figures
