"""Crash safety on Temporal: a worker SIGKILLed at a random moment of a four-call execution,
and of one whose model calls two side-effecting tools.

Another worker finishes it. Whatever the moment, the Result is ``succeeded`` and right, no
call is made more than twice, and no call (LLM or tool) that the last heartbeat before the
kill had recorded is made again: it is replayed (and marked so) by the next attempt. A tool
call that was running when the worker died runs again with the same idempotency key.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

import agtl
from agtl import temporal
from agtl.temporal import ProviderSpec
from agtl.temporal.testing import WorkerProcess, dev_server
from tests.reliability.conftest import Tally, cases
from tests.reliability.test_crash_safety import kill_schedule

ROOT = Path(__file__).resolve().parents[2]
CATEGORY = "SIGKILL of a Temporal worker mid-execution: finished calls replayed"
PROMPTS = [f"slow {name}" for name in "abcd"]


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with dev_server(directory=tmp_path_factory.mktemp("temporal")) as where:
        yield where


def calls_in(log: Path) -> list[tuple[int, str]]:
    if not log.exists():
        return []
    return [
        (int(p), prompt)
        for p, prompt in (line.split(" ", 1) for line in log.read_text().splitlines())
    ]


async def heartbeat_journal(client: Any, workflow: Any) -> int:
    """How many calls the running attempt's last heartbeat holds, read from Temporal's own
    record of the pending activity (what Temporal will hand the next attempt), not from
    agtl's account of it."""
    return len(await last_heartbeat_journal(client, workflow))


async def last_heartbeat_journal(client: Any, workflow: Any) -> list[dict[str, Any]]:
    """The journal entries of the running attempt's last heartbeat, as Temporal holds them."""
    pending = (await workflow.describe()).raw_description.pending_activities
    if not pending or not pending[0].heartbeat_details.payloads:
        return []
    details = await client.data_converter.decode(pending[0].heartbeat_details.payloads)
    return list(details[0]["journal"])


async def past_the_first_call(log: Path, after: float) -> None:
    """Return ``after`` seconds past the execution's first model call."""
    deadline = time.monotonic() + 60
    while not calls_in(log):
        assert time.monotonic() < deadline, "the execution never started"
        await asyncio.sleep(0.01)
    await asyncio.sleep(after)


def kill_the_running_worker(
    log: Path, workers: dict[int, WorkerProcess], address: str, queue: str
) -> None:
    """SIGKILL the worker that made the latest model call; start another in its place."""
    running_on = calls_in(log)[-1][0]
    workers.pop(running_on).process.send_signal(signal.SIGKILL)
    fresh = WorkerProcess.start(address, queue, concurrency=2, paths=[ROOT])
    workers[fresh.pid] = fresh


@contextlib.contextmanager
def two_workers(address: str, prefix: str) -> Iterator[tuple[str, dict[int, WorkerProcess]]]:
    """A task queue of its own with two workers (by pid), stopped at the end."""
    queue = f"{prefix}-{uuid.uuid4().hex[:8]}"
    workers = {
        w.pid: w for w in (WorkerProcess.start(address, queue, paths=[ROOT]) for _ in range(2))
    }
    try:
        yield queue, workers
    finally:
        for worker in workers.values():
            worker.stop(10)


async def run_and_kill(
    address: str, queue: str, log: Path, after: float, workers: dict[int, WorkerProcess]
) -> tuple[agtl.Result[Any], int]:
    """Submit, kill the worker running it ``after`` s past its first call; (Result, k)."""
    client = await temporal.connect(address)
    spec = ProviderSpec.factory(
        "tests.temporal.flows:scripted", log=str(log), delay=0.05, chunks=10
    )
    handle = await temporal.submit(
        client, "tests.temporal.flows:four_calls", {}, provider=spec, task_queue=queue,
        timeout=120, heartbeat_timeout=2,
    )  # fmt: skip
    await past_the_first_call(log, after)
    recorded = await heartbeat_journal(client, handle.workflow)  # what a retry is sure to get
    kill_the_running_worker(log, workers, address, queue)
    result = await handle.result()
    del client, handle
    gc.collect()
    return result, recorded


def test_a_killed_worker_never_costs_a_recorded_call_again(
    address: str, tmp_path: Path, tally: Tally
) -> None:
    with two_workers(address, "crash") as (queue, workers):
        for n, after in enumerate(kill_schedule("temporal", cases(full=8, quick=2), 0.0, 1.8)):
            tally.start(CATEGORY, key=round(after, 3))
            log = tmp_path / f"calls-{n}.log"
            result, recorded = asyncio.run(run_and_kill(address, queue, log, after, workers))
            assert result.succeeded, result
            assert result.value is not None
            assert [text.split()[0] for text in result.value] == ["word0"] * 4
            made = Counter(prompt for _, prompt in calls_in(log))
            assert set(made) == set(PROMPTS)
            assert all(count <= 2 for count in made.values()), made
            assert all(made[prompt] == 1 for prompt in PROMPTS[:recorded]), (recorded, made)
            # The kill always hits the worker running the execution before its fourth call
            # ends: every case must have been retried, or it tested nothing.
            assert result.summary.metadata["temporal_attempt"] > 1, (after, made)
            replayed = [call.replayed for call in result.summary.llm_calls]
            first_live = replayed.index(False) if False in replayed else len(replayed)
            assert first_live >= recorded
            assert replayed == [True] * first_live + [False] * (4 - first_live)
            # Only calls the new attempt made live were paid for twice.
            twice = [p for p, count in made.items() if count == 2]
            assert all(PROMPTS.index(p) >= first_live for p in twice), (first_live, made)
            # Landed: a call recorded before the kill was replayed, not paid again.
            tally.hold(CATEGORY, landed=recorded > 0)


TOOLS_CATEGORY = "SIGKILL of a Temporal worker mid-execution: finished tool calls not run again"


def ledger_in(path: Path) -> list[tuple[str, int]]:
    """(idempotency key, amount) of every charge the tools made."""
    if not path.exists():
        return []
    return [
        (key, int(amount))
        for _, key, amount in (line.split() for line in path.read_text().splitlines())
    ]


async def heartbeat_tools(client: Any, workflow: Any) -> set[int]:
    """The amounts whose charge the running attempt's last heartbeat recorded as finished."""
    return {
        int(entry["message"].split()[-1])
        for entry in await last_heartbeat_journal(client, workflow)
        if entry.get("kind") == "tool" and entry["status"] == "ok"
    }


async def approve_when_asked(handle: temporal.ExecutionHandle) -> None:
    """A person who approves the execution's request as soon as it is listed."""
    while not await handle.pending():  # noqa: ASYNC110 - Temporal pushes nothing: poll
        await asyncio.sleep(0.02)
    await handle.approve("pay-1", by="fuzz")


async def finished_charges(client: Any, handle: temporal.ExecutionHandle, ledger: Path) -> set[int]:
    """The charges that had finished: those the running attempt's last heartbeat recorded,
    or, while the execution waits for a person (no attempt running), every charge made."""
    if (await handle.workflow.describe()).raw_description.pending_activities:
        return await heartbeat_tools(client, handle.workflow)
    return {amount for _, amount in ledger_in(ledger)}


async def pay_and_kill(
    address: str,
    queue: str,
    files: tuple[Path, Path],
    after: float,
    workers: dict[int, WorkerProcess],
    approve: int | None = None,
) -> tuple[agtl.Result[Any], set[int], str]:
    """Submit the two-charge workflow (about 2 s of model time; with ``approve``, that charge
    waits for an approval, given as soon as it is asked), kill its worker ``after`` s past
    its first call; (Result, the charges that had finished at the kill, the workflow id)."""
    log, ledger = files
    client = await temporal.connect(address)
    spec = ProviderSpec.factory(
        "tests.temporal.flows:scripted", log=str(log), delay=0.05, chunks=20
    )
    handle = await temporal.submit(
        client, "tests.temporal.flows:pay_twice", {"ledger": str(ledger), "approve": approve},
        provider=spec, task_queue=queue, timeout=120, heartbeat_timeout=2,
    )  # fmt: skip
    approver = asyncio.ensure_future(approve_when_asked(handle)) if approve else None
    await past_the_first_call(log, after)
    recorded = await finished_charges(client, handle, ledger)
    kill_the_running_worker(log, workers, address, queue)
    result = await handle.result()
    if approver is not None:
        await approver
    workflow_id = handle.id
    del client, handle
    gc.collect()
    return result, recorded, workflow_id


@pytest.mark.parametrize("approve", [None, 2], ids=["no approval", "charge 2 approved"])
def test_a_killed_worker_never_runs_a_finished_tool_call_again(
    address: str, tmp_path: Path, tally: Tally, approve: int | None
) -> None:
    with two_workers(address, "pay") as (queue, workers):
        schedule = kill_schedule(f"temporal-tools-{approve}", cases(full=8, quick=2), 0.0, 1.8)
        for n, after in enumerate(schedule):
            tally.start(TOOLS_CATEGORY, key=(approve, round(after, 3)))
            files = (tmp_path / f"calls-{approve}-{n}.log", tmp_path / f"ledger-{approve}-{n}.txt")
            result, recorded, workflow_id = asyncio.run(
                pay_and_kill(address, queue, files, after, workers, approve)
            )
            assert result.succeeded, result
            assert result.unwrap()[0] == "tool said: charged 1"
            assert result.unwrap()[2] == "tool said: charged 2"
            charges = ledger_in(files[1])
            made = Counter(amount for _, amount in charges)
            assert set(made) == {1, 2}, charges
            # A charge that had finished before the kill was never made again...
            assert all(made[amount] == 1 for amount in recorded), (recorded, charges)
            # ...and one made twice (it was running when the worker died) kept its key.
            for amount in made:
                keys = {key for key, a in charges if a == amount}
                assert len(keys) == 1, charges
                assert keys.pop().startswith(f"{workflow_id}:"), charges
                assert made[amount] <= 2, charges
            if approve is None:  # one attempt, retried after the kill
                assert result.summary.metadata["temporal_attempt"] > 1, (
                    after,
                    charges,
                    calls_in(files[0]),
                    result.summary.duration,
                )
            replayed = {c.result: c.replayed for c in result.summary.tool_calls}
            assert all(replayed.get(f"charged {amount}") for amount in recorded), replayed
            approvals = [c.approval for c in result.summary.tool_calls]
            wanted = [None, None] if approve is None else [None, agtl.Approval(True, by="fuzz")]
            assert [a if a is None else attrs.evolve(a, waited=0.0) for a in approvals] == wanted
            tally.hold(TOOLS_CATEGORY, landed=bool(recorded))
