"""The client API at its edges, against a real dev server: handles found again by id, a
bounded gather, a cancel while still queued, an unknown id, and agtl registered in a worker
of one's own with Temporal's sandbox on (the documented path)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import agtl
from agtl import temporal
from agtl.temporal import Executions, ExecutionWorkflow, ProviderSpec
from tests.temporal.conftest import Workers
from tests.temporal.test_temporal import FLOWS, start, until, with_client

SPEC = ProviderSpec.factory(f"{FLOWS}:scripted")


def test_a_handle_is_found_again_by_its_id_from_another_client(workers: Workers) -> None:
    workers.start()

    async def submit(client: Any) -> str:
        handle = await start(client, workers, "answer", {"prompt": "hello"}, provider=SPEC)
        return handle.id

    execution_id = with_client(workers.address, submit)

    async def find(client: Any) -> agtl.Result[Any]:  # a new client, as another process has
        return await temporal.get_handle(client, execution_id).result()

    result = with_client(workers.address, find)
    assert result.status is agtl.Status.SUCCEEDED
    assert result.value == "echo: hello"
    assert result.summary.metadata["temporal_workflow_id"] == execution_id


def test_gather_with_a_limit_returns_that_many_newest_first(workers: Workers) -> None:
    workers.start()

    async def scenario(client: Any) -> tuple[list[str], list[agtl.Result[Any]]]:
        ids = []
        for i in range(3):  # one after the other: their order is known
            handle = await start(client, workers, "answer", {"prompt": f"q{i}"}, provider=SPEC)
            assert (await handle.result()).succeeded
            ids.append(handle.id)
        query = f"TaskQueue = '{workers.task_queue}'"

        async def listed() -> bool:  # Temporal's visibility store catches up a moment later
            return len(await temporal.gather(client, query=query)) == 3

        await until(listed, 30, "the three executions to be listed")
        return ids, await temporal.gather(client, query=query, limit=2)

    ids, gathered = with_client(workers.address, scenario)
    assert [r.summary.metadata["temporal_workflow_id"] for r in gathered] == [ids[2], ids[1]]
    assert [r.value for r in gathered] == ["echo: q2", "echo: q1"]


def test_a_cancel_while_queued_never_runs_it(workers: Workers) -> None:
    workers.start(concurrency=1)
    slow = ProviderSpec.factory(f"{FLOWS}:scripted", delay=0.05, chunks=40)

    async def scenario(client: Any) -> tuple[agtl.Result[Any], agtl.Result[Any], Any]:
        busy = await start(client, workers, "answer", {"prompt": "slow one"}, provider=slow)

        async def streaming() -> bool:
            progress = await busy.progress()
            return progress is not None and progress.streamed_chars > 0

        await until(streaming, 30, "the first execution to hold the worker's one slot")
        queued = await start(client, workers, "answer", {"prompt": "slow two"}, provider=slow)
        progress = await queued.progress()  # no attempt has started: no heartbeat
        await queued.cancel(reason="not needed after all")
        return await queued.result(), await busy.result(), progress

    canceled, finished, progress = with_client(workers.address, scenario)
    assert progress is None
    assert canceled.status is agtl.Status.CANCELED
    assert canceled.cancel is not None
    assert canceled.cancel.source is agtl.CancelSource.SIGNAL
    assert "before a worker started it" in (canceled.cancel.reason or "")
    assert canceled.summary.llm_call_count == 0  # no model was touched
    assert finished.status is agtl.Status.SUCCEEDED  # the running one was not disturbed
    assert str(finished.value).startswith("word0 ")


def test_an_unknown_id_is_a_clear_error(workers: Workers) -> None:
    async def scenario(client: Any) -> list[str]:
        handle = temporal.get_handle(client, "no-such-execution")
        messages = []
        for ask in (handle.result, handle.progress, handle.cancel):
            with pytest.raises(temporal.ExecutionNotFoundError) as info:
                await ask()
            messages.append(str(info.value))
        return messages

    for message in with_client(workers.address, scenario):
        assert "no execution 'no-such-execution' on Temporal (namespace 'default')" in message
        assert "check the id" in message


def test_agtl_in_a_worker_of_ones_own_with_the_sandbox_on(temporal_address: str) -> None:
    queue = f"own-{uuid.uuid4().hex[:8]}"

    async def scenario(client: Any) -> agtl.Result[Any]:
        worker = Worker(
            client,
            task_queue=queue,
            workflows=[ExecutionWorkflow],
            activities=[Executions().execute],
            workflow_runner=SandboxedWorkflowRunner(
                restrictions=SandboxRestrictions.default.with_passthrough_modules("agtl")
            ),
        )
        async with worker:
            handle = await temporal.submit(
                client, f"{FLOWS}:answer", {"prompt": "sandboxed"}, provider=SPEC, task_queue=queue
            )
            return await asyncio.wait_for(handle.result(), 60)

    result = with_client(temporal_address, scenario)
    assert result.status is agtl.Status.SUCCEEDED
    assert result.value == "echo: sandboxed"
    assert result.summary.metadata["temporal_attempt"] == 1


def test_a_typed_value_comes_back_as_its_type(workers: Workers) -> None:
    """A dataclass of pydantic models, dates, Decimals, enums and bytes crosses Temporal in its
    JSON form; ``value_type`` validates it back; a value with no JSON form fails clearly."""
    from tests.temporal.flows import Forecast, Outlook, Sky

    workers.start()

    async def scenario(client: Any) -> tuple[agtl.Result[Any], agtl.Result[Any], Any]:
        handle = await start(client, workers, "typed", {"city": "Oslo"}, provider=SPEC)
        typed = await handle.result(value_type=Outlook)
        plain = await handle.result()
        bad = await start(client, workers, "unserializable", None, provider=SPEC)
        return typed, plain, await bad.result()

    typed, plain, bad = with_client(workers.address, scenario)
    assert typed.status is agtl.Status.SUCCEEDED
    assert isinstance(typed.value, Outlook)
    [forecast] = typed.value.forecasts
    assert forecast == Forecast(
        city="echo: Oslo", day=dt.date(2026, 12, 5), high=Decimal("7.5"), sky=Sky.RAIN
    )
    assert typed.value.raw == b"\x00\x01"
    assert typed.value.issued == dt.datetime(2026, 12, 4, 9, 0, tzinfo=dt.UTC)
    form: Any = plain.value  # the JSON form, without a type
    assert form["forecasts"][0]["high"] == "7.5"
    assert form["raw"] == "AAE="
    assert bad.status is agtl.Status.FAILED
    assert isinstance(bad.error, agtl.RemoteError)
    assert bad.error.type_name == "UnserializableValueError"
    assert "value['handle'] is a object, which has no JSON form" in str(bad.error)
    assert bad.summary.metadata["temporal_workflow_id"]
