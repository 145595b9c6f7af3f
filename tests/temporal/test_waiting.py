"""Executions on Temporal that wait for a person: the workflow waits durably between attempts
(no worker slot held), decided with the handle's approve / deny / provide_input, across worker
and dev-server restarts, with the journal replayed so nothing runs twice."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

import agtl
from agtl import temporal
from agtl.temporal import ProviderSpec
from agtl.temporal.testing import dev_server
from tests.local import free_port
from tests.temporal.conftest import Workers
from tests.temporal.test_temporal import FLOWS, calls_in, start, until, with_client


def spec(log: Path) -> ProviderSpec:
    return ProviderSpec.factory(f"{FLOWS}:scripted", log=str(log))


async def waiting_for(
    handle: temporal.ExecutionHandle, seconds: float = 60
) -> tuple[temporal.PendingRequest, ...]:
    """The execution's open requests, once there are some."""
    found: tuple[temporal.PendingRequest, ...] = ()

    async def some() -> bool:
        nonlocal found
        found = await handle.pending()
        return bool(found)

    await until(some, seconds, f"{handle.id} to wait for a person")
    return found


def ledger_lines(ledger: Path) -> list[str]:
    return ledger.read_text().splitlines() if ledger.exists() else []


def test_an_approval_outlives_the_worker_that_asked_and_the_tool_runs_once(
    workers: Workers, tmp_path: Path
) -> None:
    log, ledger = tmp_path / "calls.log", tmp_path / "ledger.txt"
    asked = workers.start(concurrency=1)

    async def scenario(client: Any) -> tuple[agtl.Result[Any], str]:
        handle = await start(
            client, workers, "approved_charge", {"ledger": str(ledger)}, provider=spec(log)
        )
        [request] = await waiting_for(handle)
        assert (request.kind, request.id, request.tool) == ("approval", "pay-1", "charge")
        assert request.arguments == {"amount": 5}
        # The attempt ended: no activity runs while the execution waits.
        description = await handle.workflow.describe()
        assert not description.raw_description.pending_activities
        # The worker that asked goes away; another one takes the execution on.
        assert asked.stop(10) == 0
        workers.start(concurrency=1)
        with pytest.raises(agtl.InvalidArgumentError, match="not an open approval request"):
            await handle.approve("no-such-call")
        await handle.approve("pay-1", by="alice")
        with pytest.raises(agtl.InvalidArgumentError, match="was already decided"):
            await handle.deny("pay-1", "too late")
        result = await handle.result()
        with pytest.raises(agtl.InvalidArgumentError, match="has ended"):
            await handle.approve("pay-1")
        return result, handle.id

    result, workflow_id = with_client(workers.address, scenario)
    assert result.succeeded, result
    assert result.value == "tool said: charged 5"
    lines = ledger_lines(ledger)
    assert len(lines) == 1, lines
    assert lines[0].split()[1:] == [f"{workflow_id}:0", "5"]
    [charge] = result.summary.tool_calls
    assert charge.status is agtl.ToolCallStatus.OK
    assert charge.approval is not None
    assert charge.approval.approved
    assert charge.approval.by == "alice"
    assert charge.approval.waited > 0
    # The call that asked for the charge was made once and replayed in the second attempt.
    assert [c.replayed for c in result.summary.llm_calls] == [True, False]
    assert [p for _, p in calls_in(log)] == ["pay 5", "charged 5"]


def test_a_denial_an_answer_and_their_timeouts(workers: Workers, tmp_path: Path) -> None:
    log, ledger = tmp_path / "calls.log", tmp_path / "ledger.txt"
    workers.start(concurrency=2)

    async def scenario(client: Any) -> list[agtl.Result[Any]]:
        denied = await start(
            client, workers, "approved_charge", {"ledger": str(ledger)}, provider=spec(log)
        )
        timed_out = await start(
            client,
            workers,
            "approved_charge",
            {"ledger": str(ledger), "approval_timeout": 1},
            provider=spec(log),
        )
        asked = await start(client, workers, "asks_a_number", {}, provider=spec(log))
        unanswered = await start(
            client, workers, "asks_a_number", {"timeout": 1}, provider=spec(log)
        )
        await waiting_for(denied)
        await denied.deny("pay-1", "over budget", by="bob")
        [question] = await waiting_for(asked)
        assert (question.kind, question.id, question.prompt) == ("input", "input", "how many?")
        assert question.schema == {"type": "integer"}
        with pytest.raises(agtl.InvalidArgumentError, match="does not fit"):
            await asked.provide_input("input", "three")
        with pytest.raises(agtl.InvalidArgumentError, match="not an open input request"):
            await asked.provide_input("other", 3)
        await asked.provide_input("input", 3)
        return list(
            await asyncio.gather(*(h.result() for h in (denied, timed_out, asked, unanswered)))
        )

    denied, timed_out, asked, unanswered = with_client(workers.address, scenario)
    assert ledger_lines(ledger) == []  # no charge ran
    assert denied.value == "tool said: The user denied this call: over budget"
    [call] = denied.summary.tool_calls
    assert call.status is agtl.ToolCallStatus.DENIED
    assert call.approval is not None
    assert call.approval == agtl.Approval(False, "over budget", "bob", call.approval.waited)
    assert timed_out.value == "tool said: The user denied this call: no decision within 1 s"
    assert asked.value == "echo: got 3"
    assert unanswered.failed
    assert isinstance(unanswered.error, agtl.RemoteError)
    assert "no answer to 'how many?' within 1 s" in str(unanswered.error)


def test_a_cancel_while_waiting_ends_it_canceled_with_its_summary(
    workers: Workers, tmp_path: Path
) -> None:
    log, ledger = tmp_path / "calls.log", tmp_path / "ledger.txt"
    workers.start(concurrency=1)

    async def scenario(client: Any) -> tuple[agtl.Result[Any], agtl.Result[Any]]:
        cancelled = await start(
            client, workers, "approved_charge", {"ledger": str(ledger)}, provider=spec(log)
        )
        timed = await start(
            client,
            workers,
            "approved_charge",
            {"ledger": str(ledger)},
            provider=spec(log),
            timeout=3,
        )
        await waiting_for(cancelled)
        await cancelled.cancel("the user left")
        return await cancelled.result(), await timed.result()

    cancelled, timed = with_client(workers.address, scenario)
    assert ledger_lines(ledger) == []
    assert cancelled.canceled
    assert cancelled.cancel is not None
    assert cancelled.cancel.source is agtl.CancelSource.SIGNAL
    assert "the user left" in (cancelled.cancel.reason or "")
    for result in (cancelled, timed):
        [call] = result.summary.tool_calls
        assert call.status is agtl.ToolCallStatus.CANCELLED
        assert [c.replayed for c in result.summary.llm_calls] == [True]
        assert result.summary.total_usage.output_tokens == 1  # what the first attempt paid
    assert timed.canceled
    assert timed.cancel is not None
    assert timed.cancel.source is agtl.CancelSource.TIMEOUT
    assert "timeout passed while it waited" in (timed.cancel.reason or "")


def test_100_waiting_executions_hold_no_worker_slot(workers: Workers, tmp_path: Path) -> None:
    log, ledger = tmp_path / "calls.log", tmp_path / "ledger.txt"
    workers.start(concurrency=1)

    async def scenario(client: Any) -> tuple[list[agtl.Result[Any]], agtl.Result[Any]]:
        handles = await asyncio.gather(
            *(
                start(
                    client,
                    workers,
                    "approved_charge",
                    {"ledger": str(ledger), "amount": n},
                    provider=spec(log),
                )
                for n in range(100)
            )
        )
        for handle in handles:
            await waiting_for(handle, 120)
        # All 100 wait; the one-slot worker still runs other work at once.
        other = await start(client, workers, "answer", {"prompt": "meanwhile"}, provider=spec(log))
        other_result = await asyncio.wait_for(other.result(), 30)
        await asyncio.gather(*(h.approve("pay-1") for h in handles))
        return list(await asyncio.gather(*(h.result() for h in handles))), other_result

    results, other = with_client(workers.address, scenario)
    assert other.value == "echo: meanwhile"
    assert [r.value for r in results] == [f"tool said: charged {n}" for n in range(100)]
    assert sorted(int(line.split()[2]) for line in ledger_lines(ledger)) == list(range(100))


def test_an_approval_after_the_dev_server_itself_restarted(tmp_path: Path) -> None:
    log, ledger = tmp_path / "calls.log", tmp_path / "ledger.txt"
    port, directory = free_port(), tmp_path / "server"
    directory.mkdir()
    queue = f"agtl-test-{uuid.uuid4().hex[:8]}"
    with dev_server(port=port, directory=directory) as address:
        pool = Workers(address, queue, tmp_path)
        pool.start(concurrency=1)

        async def ask(client: Any) -> str:
            handle = await start(
                client, pool, "approved_charge", {"ledger": str(ledger)}, provider=spec(log)
            )
            await waiting_for(handle)
            return handle.id

        try:
            workflow_id = with_client(address, ask)
        finally:
            pool.stop_all()
    with dev_server(port=port, directory=directory) as address:
        pool = Workers(address, queue, tmp_path)
        pool.start(concurrency=1)

        async def approve(client: Any) -> agtl.Result[Any]:
            handle = temporal.get_handle(client, workflow_id)
            [request] = await handle.pending()
            assert request.id == "pay-1"
            await handle.approve("pay-1")
            return await handle.result()

        try:
            result = with_client(address, approve)
        finally:
            pool.stop_all()
    assert result.value == "tool said: charged 5"
    assert len(ledger_lines(ledger)) == 1


def test_an_approval_inside_a_sub_agent_waits_on_the_root(workers: Workers, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.txt"
    workers.start(concurrency=1)

    async def scenario(client: Any) -> agtl.Result[Any]:
        handle = await start(
            client,
            workers,
            "cashier_team",
            {"ledger": str(ledger)},
            provider=ProviderSpec.factory(f"{FLOWS}:cashier_team_model"),
        )
        [request] = await waiting_for(handle)
        assert (request.kind, request.id, request.tool) == ("approval", "c1", "charge")
        assert ledger_lines(ledger) == []
        await handle.approve("c1", by="root")
        return await handle.result()

    result = with_client(workers.address, scenario)
    assert result.value == "planner says: cashier says: charged 9"
    assert len(ledger_lines(ledger)) == 1
    [child] = result.summary.children
    assert child.status is agtl.Status.SUCCEEDED
