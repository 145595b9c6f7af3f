"""agtl on Temporal: a real dev server, `agtl worker` processes, the client API end to end."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from temporalio.client import WorkflowExecutionStatus

import agtl
from agtl import temporal
from agtl.reporting import JsonlSink
from agtl.temporal import ProviderSpec
from tests.local import free_port
from tests.temporal.conftest import TEMPORAL, Workers

T = TypeVar("T")
FLOWS = "tests.temporal.flows"


def with_client(address: str, scenario: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``scenario(client)`` on a fresh asyncio loop with a client of the dev server."""

    async def main() -> T:
        client = await temporal.connect(address)
        try:
            return await scenario(client)
        finally:
            # Drop the SDK's native client before the interpreter can finalize around it.
            del client
            gc.collect()

    return asyncio.run(main())


def calls_in(log: Path) -> list[tuple[int, str]]:
    """(worker pid, prompt) of every request that reached the scripted model."""
    if not log.exists():
        return []
    lines = [line.split(" ", 1) for line in log.read_text().splitlines() if line]
    return [(int(pid), prompt) for pid, prompt in lines]


def history_text(node: Any) -> str:
    """Every string of a workflow history, with payload data decoded from base64."""
    if isinstance(node, dict):
        parts = []
        for key, value in node.items():
            if key == "data" and isinstance(value, str):
                parts.append(base64.b64decode(value).decode(errors="replace"))
            else:
                parts.append(history_text(value))
        return "\n".join(parts)
    if isinstance(node, list):
        return "\n".join(history_text(item) for item in node)
    return str(node)


async def until(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def start(
    client: Any, workers: Workers, name: str, input: Any = None, **options: Any
) -> temporal.ExecutionHandle:
    """Submit the test workflow ``name`` to the test's task queue."""
    return await temporal.submit(
        client, f"{FLOWS}:{name}", input, task_queue=workers.task_queue, **options
    )


async def until_streaming(handles: list[temporal.ExecutionHandle]) -> None:
    """Wait until every execution's reply has started streaming (from their heartbeats)."""

    async def streaming() -> bool:
        progress = await asyncio.gather(*(handle.progress() for handle in handles))
        return all(p is not None and p.streamed_chars > 0 for p in progress)

    await until(streaming, 30, "the replies to start streaming")


def test_200_executions_across_two_workers_each_run_once(workers: Workers, tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    first, second = workers.start(concurrency=8), workers.start(concurrency=8)
    spec = ProviderSpec.factory(f"{FLOWS}:scripted", log=str(log))

    async def scenario(client: Any) -> list[agtl.Result[Any]]:
        handles = await asyncio.gather(
            *(
                start(
                    client,
                    workers,
                    "answer",
                    {"prompt": f"question {i}"},
                    provider=spec,
                    timeout=60,
                )
                for i in range(200)
            )
        )
        return list(await asyncio.gather(*(handle.result() for handle in handles)))

    results = with_client(workers.address, scenario)
    assert [r.status for r in results] == [agtl.Status.SUCCEEDED] * 200
    assert [r.value for r in results] == [f"echo: question {i}" for i in range(200)]
    assert all(r.summary.llm_call_count == 1 for r in results)
    calls = calls_in(log)
    assert sorted(prompt for _, prompt in calls) == sorted(f"question {i}" for i in range(200))
    assert {pid for pid, _ in calls} == {first.pid, second.pid}  # both workers took work
    # The Results gathered from Temporal make a report like local ones do.
    gathered = tmp_path / "gathered.jsonl"
    sink = JsonlSink(gathered)
    for result in results:
        sink.write(result)
    records, skipped = JsonlSink.read(gathered)
    assert (len(records), skipped) == (200, 0)
    report = subprocess.run(
        [sys.executable, "-m", "agtl.cli", "report", str(gathered)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "200" in report.stdout
    # Each worker also kept the records of what it ran.
    worker_records, _ = JsonlSink.read(tmp_path / "summaries.jsonl")
    assert len(worker_records) == 200


def test_the_bundled_local_model_answers_through_temporal(workers: Workers) -> None:
    workers.start(concurrency=1)

    async def scenario(client: Any) -> agtl.Result[Any]:
        handle = await start(
            client,
            workers,
            "answer",
            {"prompt": "What is the capital of France?", "max_tokens": 24},
            provider=ProviderSpec.local(temperature=0),
            timeout=120,
        )
        return await handle.result()

    result = with_client(workers.address, scenario)
    assert result.succeeded, result
    assert "Paris" in str(result.value)
    call = result.summary.llm_calls[0]
    assert call.provider == "llamacpp"
    assert call.usage.output_tokens is not None
    assert call.usage.output_tokens > 0


def slow_spec(log: Path, chunks: int = 400) -> ProviderSpec:
    return ProviderSpec.factory(f"{FLOWS}:scripted", log=str(log), delay=0.05, chunks=chunks)


async def streaming_story(client: Any, workers: Workers, log: Path) -> temporal.ExecutionHandle:
    """Submit a long scripted reply; return once it is streaming."""
    handle = await start(
        client, workers, "answer", {"prompt": "slow story"}, provider=slow_spec(log), timeout=60
    )
    await until_streaming([handle])
    return handle


def test_a_cancel_from_the_client_ends_the_execution_canceled_with_its_partial(
    workers: Workers, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    workers.start(concurrency=1)

    async def scenario(client: Any) -> tuple[agtl.Result[Any], agtl.Result[Any]]:
        handle = await streaming_story(client, workers, log)
        await handle.cancel(reason="the user pressed Stop")
        canceled = await handle.result()
        # The one-slot worker is free again.
        after = await start(
            client,
            workers,
            "answer",
            {"prompt": "next"},
            provider=slow_spec(log),
            timeout=30,
        )
        return canceled, await after.result()

    canceled, after = with_client(workers.address, scenario)
    assert canceled.status is agtl.Status.CANCELED
    assert canceled.cancel is not None
    assert canceled.cancel.source is agtl.CancelSource.SIGNAL
    assert "the Temporal workflow was cancelled: the user pressed Stop" in (
        canceled.cancel.reason or ""
    )
    assert canceled.partial is not None
    assert canceled.partial.text.startswith("word0 word1")
    assert len(canceled.partial.text.split()) < 400  # stopped mid-stream
    assert canceled.summary.llm_calls[0].stop_reason is agtl.StopReason.CANCELLED
    assert after.succeeded
    assert after.value == "echo: next"


def test_the_timeout_is_agtls_deadline_and_the_summary_survives(
    workers: Workers, tmp_path: Path
) -> None:
    workers.start(concurrency=1)

    async def scenario(client: Any) -> agtl.Result[Any]:
        handle = await start(
            client,
            workers,
            "answer",
            {"prompt": "slow story"},
            provider=slow_spec(tmp_path / "calls.log"),
            timeout=1.5,
        )
        return await handle.result()

    result = with_client(workers.address, scenario)
    assert result.canceled
    assert result.cancel is not None
    assert result.cancel.source is agtl.CancelSource.TIMEOUT  # agtl ended it, not Temporal
    assert result.summary.duration < 1.5
    assert result.summary.llm_call_count == 1
    assert result.partial is not None
    assert result.partial.text.startswith("word0")


def test_a_cancel_from_the_temporal_cli_reaches_the_execution(
    workers: Workers, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    workers.start(concurrency=1)

    async def scenario(client: Any) -> agtl.Result[Any]:
        handle = await streaming_story(client, workers, log)
        cancel = await asyncio.create_subprocess_exec(
            TEMPORAL,
            "workflow",
            "cancel",
            "--workflow-id",
            handle.id,
            "--reason",
            "",  # the CLI takes a reason for batches only
            "--address",
            workers.address,
            stdout=asyncio.subprocess.DEVNULL,
        )
        assert await cancel.wait() == 0
        return await handle.result()

    result = with_client(workers.address, scenario)
    assert result.canceled
    assert result.cancel is not None
    assert result.cancel.source is agtl.CancelSource.SIGNAL
    # The CLI sends no reason for one workflow; its identity names who cancelled.
    assert (result.cancel.reason or "").startswith("the Temporal workflow was cancelled (by ")
    assert result.partial is not None
    assert result.partial.text


def test_a_killed_worker_is_replaced_and_finished_calls_are_replayed(
    workers: Workers, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    pids = {w.pid: w for w in (workers.start(concurrency=2), workers.start(concurrency=2))}

    async def scenario(client: Any) -> tuple[agtl.Result[Any], int]:
        handle = await start(
            client,
            workers,
            "three_calls",
            {},
            provider=slow_spec(log, chunks=60),
            timeout=120,
            heartbeat_timeout=2,
        )

        async def third_call_running() -> bool:
            progress = await handle.progress()
            return (
                progress is not None
                and progress.calls == 2  # the first two are in the heartbeat
                and any(prompt == "slow third" for _, prompt in calls_in(log))
            )

        await until(third_call_running, 60, "the third call to start")
        victim = next(pid for pid, prompt in calls_in(log) if prompt == "slow third")
        pids[victim].process.send_signal(signal.SIGKILL)
        return await handle.result(), victim

    result, victim = with_client(workers.address, scenario)
    assert result.succeeded, result
    assert result.value is not None
    assert result.value[:2] == ["echo: one", "echo: two"]
    assert result.summary.metadata["temporal_attempt"] == 2
    prompts = Counter(prompt for _, prompt in calls_in(log))
    assert prompts == {"one": 1, "two": 1, "slow third": 2}  # only the interrupted call again
    assert {pid for pid, prompt in calls_in(log) if prompt == "one"} == {victim}
    assert [c.replayed for c in result.summary.llm_calls] == [True, True, False]
    assert result.summary.total_usage.output_tokens == 2 + 2 + 60  # each call counted once


def test_a_finished_tool_call_is_not_run_again_after_a_worker_is_killed(
    workers: Workers, tmp_path: Path
) -> None:
    log, ledger = tmp_path / "calls.log", tmp_path / "ledger.txt"
    pids = {w.pid: w for w in (workers.start(concurrency=2), workers.start(concurrency=2))}

    async def scenario(client: Any) -> tuple[agtl.Result[Any], str]:
        handle = await start(
            client,
            workers,
            "charge_then_slow",
            {"ledger": str(ledger)},
            provider=slow_spec(log, chunks=60),
            timeout=120,
            heartbeat_timeout=2,
        )

        async def slow_call_running() -> bool:
            progress = await handle.progress()
            return (
                progress is not None
                and progress.calls == 2  # the call that asked for the charge, and its answer
                and any(p == "slow after the charge" for _, p in calls_in(log))
            )

        await until(slow_call_running, 60, "the slow call after the charge to start")
        victim = next(pid for pid, p in calls_in(log) if p == "slow after the charge")
        pids[victim].process.send_signal(signal.SIGKILL)
        return await handle.result(), handle.id

    result, workflow_id = with_client(workers.address, scenario)
    assert result.succeeded, result
    paid, slow = result.unwrap()
    assert paid == "tool said: charged 5"
    assert slow.startswith("word0 ")
    lines = ledger.read_text().splitlines()
    assert len(lines) == 1, lines  # charged exactly once
    assert lines[0].split()[1:] == [f"{workflow_id}:0", "5"]  # its key: the workflow id
    assert result.summary.metadata["temporal_attempt"] == 2
    [charge] = result.summary.tool_calls
    assert charge.replayed
    assert charge.status is agtl.ToolCallStatus.OK
    assert [c.replayed for c in result.summary.llm_calls] == [True, True, False]
    assert "charge ok" in result.summary.format()


def test_a_worker_stopped_with_sigterm_cancels_what_runs_and_reports_it(
    workers: Workers, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    worker = workers.start(concurrency=3)

    async def scenario(client: Any) -> list[agtl.Result[Any]]:
        handles = [
            await start(
                client,
                workers,
                "answer",
                {"prompt": f"slow {i}"},
                provider=slow_spec(log),
                timeout=60,
            )
            for i in range(3)
        ]

        await until_streaming(handles)
        worker.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.process.wait, 30) == 0
        worker.wait_for_line("stopped", 5)
        # The activities reported their canceled Results before the worker exited; a workflow
        # needs a worker of its queue to return them (any worker, at once; it runs nothing).
        workers.start(concurrency=1)
        return list(await asyncio.gather(*(h.result() for h in handles)))

    results = with_client(workers.address, scenario)
    assert len(calls_in(log)) == 3  # nothing ran again
    for result in results:
        assert result.canceled, result
        assert result.cancel is not None
        assert result.cancel.reason == "the worker was stopped (SIGTERM)"
        assert result.partial is not None
        assert result.partial.text.startswith("word0")
        assert result.summary.llm_call_count == 1


def test_an_id_names_one_execution_and_a_second_submit_gets_it(
    workers: Workers, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    workers.start(concurrency=2)
    slow = slow_spec(log, chunks=20)  # about a second
    execution_id = f"agtl-test-fixed-{uuid.uuid4().hex[:8]}"

    async def scenario(client: Any) -> tuple[list[str], list[agtl.Result[Any]]]:
        def submit(prompt: str) -> Awaitable[temporal.ExecutionHandle]:
            return start(
                client, workers, "answer", {"prompt": prompt}, provider=slow, id=execution_id
            )

        first = await submit("slow once")
        while_running = await submit("slow once")  # a client retrying its submit
        description = await first.workflow.describe()
        assert description.status is WorkflowExecutionStatus.RUNNING  # the 2nd submit met it so
        assert await description.static_summary() == f"agtl: {FLOWS}:answer"  # Temporal's UI
        result = await first.result()
        after_it_ended = await submit("slow once")
        with pytest.raises(agtl.InvalidArgumentError, match="already names another execution"):
            await submit("slow other")
        runs = [
            (await h.workflow.describe()).run_id for h in (first, while_running, after_it_ended)
        ]
        return runs, [result, await while_running.result(), await after_it_ended.result()]

    runs, results = with_client(workers.address, scenario)
    assert len(set(runs)) == 1  # one Temporal run behind all three handles
    assert [prompt for _, prompt in calls_in(log)] == ["slow once"]  # the model was asked once
    assert all(r.succeeded for r in results), results
    assert len({r.summary.execution_id for r in results}) == 1


def test_a_draining_worker_lets_what_runs_finish_and_takes_no_new_work(
    workers: Workers, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    draining = workers.start(concurrency=2, arguments=("--drain", "60"))

    async def scenario(client: Any) -> list[agtl.Result[Any]]:
        running = await start(
            client, workers, "answer", {"prompt": "slow a"}, provider=slow_spec(log, chunks=40)
        )
        await until_streaming([running])  # about two seconds of reply left
        draining.process.send_signal(signal.SIGTERM)
        draining.wait_for_line("draining", 10)
        later = await start(client, workers, "answer", {"prompt": "b"}, provider=slow_spec(log))
        assert await asyncio.to_thread(draining.process.wait, 30) == 0  # once "slow a" ended
        assert [prompt for _, prompt in calls_in(log)] == ["slow a"]  # "b" was not taken
        workers.start(concurrency=1)  # completes both workflows, runs "b"
        return [await running.result(), await later.result()]

    finished, later = with_client(workers.address, scenario)
    assert finished.succeeded, finished
    assert finished.value == "".join(f"word{i} " for i in range(40))  # the whole reply
    assert str(draining.pid) in finished.summary.metadata["temporal_worker"]
    assert later.succeeded, later
    assert str(draining.pid) not in later.summary.metadata["temporal_worker"]


@pytest.mark.parametrize(
    ("drain", "second_signal"), [("1", False), ("600", True)], ids=["runs-out", "second-signal"]
)
def test_a_drain_that_ends_cancels_what_still_runs_with_the_reason(
    workers: Workers, tmp_path: Path, drain: str, second_signal: bool
) -> None:
    log = tmp_path / "calls.log"
    worker = workers.start(concurrency=1, arguments=("--drain", drain))

    async def scenario(client: Any) -> agtl.Result[Any]:
        handle = await streaming_story(client, workers, log)  # 20 s of reply
        worker.process.send_signal(signal.SIGTERM)
        worker.wait_for_line("draining", 10)
        if second_signal:
            worker.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.process.wait, 30) == 0
        workers.start(concurrency=1)
        return await handle.result()

    # Had the drain waited for the 20 s reply, the story would have ended succeeded.
    result = with_client(workers.address, scenario)
    assert result.canceled, result
    assert result.cancel is not None
    assert result.cancel.reason == "the worker was stopped (SIGTERM)"
    assert result.partial is not None
    assert result.partial.text.startswith("word0")
    assert len(calls_in(log)) == 1


def test_a_terminated_workflow_is_a_canceled_result_and_frees_the_worker(
    workers: Workers, tmp_path: Path
) -> None:
    workers.start(concurrency=1)

    async def scenario(client: Any) -> tuple[agtl.Result[Any], agtl.Result[Any]]:
        handle = await streaming_story(client, workers, tmp_path / "calls.log")
        await handle.workflow.terminate(reason="ops stopped it")
        terminated = await handle.result()
        spec = ProviderSpec.factory(f"{FLOWS}:scripted")
        after = await start(client, workers, "answer", {"prompt": "next"}, provider=spec)
        return terminated, await after.result()

    terminated, after = with_client(workers.address, scenario)
    assert terminated.canceled, terminated
    assert terminated.cancel is not None
    assert terminated.cancel.source is agtl.CancelSource.SIGNAL
    assert terminated.cancel.reason == "the Temporal workflow was terminated: ops stopped it"
    assert after.succeeded  # the one slot was freed: the story's execution was cancelled
    assert after.value == "echo: next"
    # The worker's own record of the story says why it stopped.
    records, _ = JsonlSink.read(tmp_path / "summaries.jsonl")
    [story] = [r for r in records if r["execution_id"] != after.summary.execution_id]
    assert story["status"] == "canceled"
    assert story["cancel"]["reason"].startswith(
        "the Temporal workflow was terminated: ops stopped it (by "
    )


def test_bad_input_fails_at_the_call(workers: Workers) -> None:
    spec = ProviderSpec.factory(f"{FLOWS}:scripted")

    async def scenario(client: Any) -> None:
        queue = workers.task_queue
        with pytest.raises(agtl.InvalidArgumentError, match="has no 'missing'"):
            await temporal.submit(client, f"{FLOWS}:missing", provider=spec, task_queue=queue)
        with pytest.raises(agtl.InvalidArgumentError, match="cannot import 'no_such_module'"):
            await temporal.submit(client, "no_such_module:fn", provider=spec, task_queue=queue)
        with pytest.raises(agtl.InvalidArgumentError, match="import path"):
            await temporal.submit(client, "flows.py", provider=spec, task_queue=queue)
        with pytest.raises(agtl.InvalidArgumentError, match="not an async function"):
            await temporal.submit(client, f"{FLOWS}:not_async", provider=spec, task_queue=queue)
        with pytest.raises(agtl.InvalidArgumentError, match=r"input\['x'\] is a object"):
            await temporal.submit(client, f"{FLOWS}:answer", {"x": object()}, provider=spec)
        with pytest.raises(agtl.InvalidArgumentError, match="must be JSON data"):
            await temporal.submit(client, f"{FLOWS}:answer", {"x": float("nan")}, provider=spec)
        with pytest.raises(agtl.InvalidArgumentError, match="ProviderSpec"):
            await temporal.submit(client, f"{FLOWS}:answer", {}, provider="local")  # type: ignore[arg-type]
        # The core's own checks: a bool is neither seconds nor a count.
        answer = f"{FLOWS}:answer"
        for bad, message in (
            ({"timeout": True}, "timeout: must be a number of seconds, not bool"),
            ({"timeout": -1}, "timeout: must be >= 0 seconds"),
            ({"max_attempts": True}, "max_attempts: must be an int, not bool"),
            ({"max_attempts": 0}, "max_attempts: must be >= 1"),
            ({"heartbeat_timeout": 0}, "heartbeat_timeout: must be more than 0 seconds"),
        ):
            with pytest.raises(agtl.InvalidArgumentError) as info:
                await temporal.submit(client, answer, {}, provider=spec, **bad)
            assert message in str(info.value), (bad, str(info.value))

    with_client(workers.address, scenario)
    with pytest.raises(temporal.TemporalUnavailableError, match=r"127\.0\.0\.1:\d+.*running"):
        asyncio.run(temporal.connect(f"127.0.0.1:{free_port()}"))
    with pytest.raises(agtl.InvalidArgumentError, match="looks like a secret"):
        ProviderSpec.openai("http://127.0.0.1:1/v1", "m", api_key="sk-123")
    with pytest.raises(agtl.InvalidArgumentError, match="environment variable"):
        ProviderSpec.openai("http://127.0.0.1:1/v1", "m", api_key_env="sk-live-123")


def test_streaming_and_failing_workflows_and_a_worker_without_the_code(
    workers: Workers,
) -> None:
    workers.start(concurrency=2)
    spec = ProviderSpec.factory(f"{FLOWS}:scripted")

    async def scenario(client: Any) -> tuple[agtl.Result[Any], agtl.Result[Any]]:
        failing = await start(client, workers, "fails", 3, provider=spec)
        unknown = await temporal.submit(
            client,
            "only_on_the_client:fn",
            provider=spec,
            task_queue=workers.task_queue,
            check=False,
        )
        streamed = await start(client, workers, "streamed", {"n": 3}, provider=spec)
        bare = await start(client, workers, "no_input", provider=spec)
        assert (await bare.result()).value == "no input needed"
        stream_result = await streamed.result()
        assert stream_result.value == "echo: stream done"
        assert [e.type for e in stream_result.events] == ["tick", "tick", "tick", "complete"]
        assert [e.data for e in stream_result.events[:3]] == [0, 1, 2]
        return await failing.result(), await unknown.result()

    failing, unknown = with_client(workers.address, scenario)
    assert failing.failed
    assert isinstance(failing.error, agtl.RemoteError)
    assert (failing.error.type_name, str(failing.error)) == ("ValueError", "bad value 3")
    assert unknown.failed  # not retried: no attempt can import it
    assert isinstance(unknown.error, agtl.RemoteError)
    assert "cannot import 'only_on_the_client'" in str(unknown.error)


def test_no_secret_reaches_the_workflow_history(workers: Workers, tmp_path: Path) -> None:
    from agtl_openai.testing import serve_local_model

    secret = "sk-agtl-test-9f8e7d6c5b4a-DO-NOT-LEAK"
    workers.start(concurrency=1, env={"AGTL_TEST_KEY": secret})
    with serve_local_model() as url:
        spec = ProviderSpec.openai(url, "smollm2", api_key_env="AGTL_TEST_KEY", temperature=0)

        async def scenario(client: Any) -> tuple[agtl.Result[Any], str]:
            handle = await start(
                client,
                workers,
                "answer",
                {"prompt": "Say hi.", "max_tokens": 8},
                provider=spec,
                timeout=120,
            )
            result = await handle.result()
            history = await handle.workflow.fetch_history()
            return result, history_text(history.to_json_dict())

        result, history = with_client(workers.address, scenario)
    assert result.succeeded, result
    assert "AGTL_TEST_KEY" in history  # the spec names the variable...
    assert secret not in history  # ...never its value
    assert secret not in json.dumps(result.to_dict())
    assert secret not in (tmp_path / "summaries.jsonl").read_text()


def test_agtl_report_reads_the_finished_executions_from_temporal(workers: Workers) -> None:
    workers.start(concurrency=2)
    spec = ProviderSpec.factory(f"{FLOWS}:scripted")
    mine = f"TaskQueue = '{workers.task_queue}'"

    async def scenario(client: Any) -> list[agtl.Result[Any]]:
        handles = [
            await start(client, workers, "answer", {"prompt": "one"}, provider=spec),
            await start(client, workers, "answer", {"prompt": "two"}, provider=spec),
            await start(client, workers, "fails", 1, provider=spec),
        ]
        for handle in handles:
            await handle.result()

        async def listed() -> bool:  # Temporal's list catches up a moment later
            return len(await temporal.gather(client, query=mine)) == 3

        await until(listed, 30, "the three executions to be listed")
        return await temporal.gather(client, query=mine)

    gathered = with_client(workers.address, scenario)
    assert sorted(r.status.value for r in gathered) == ["failed", "succeeded", "succeeded"]
    report_command = [sys.executable, "-m", "agtl.cli", "report", "--temporal", workers.address]
    report = subprocess.run(
        [*report_command, "--query", mine],
        capture_output=True,
        text=True,
        check=False,
    )
    assert report.returncode == 0, report.stderr
    assert f"3 executions in Temporal at {workers.address}" in report.stdout
    assert "2 (2 succeeded, 0 canceled, 0 failed)" in report.stdout  # the scripted model's
    assert "1 (0 succeeded, 0 canceled, 1 failed)" in report.stdout  # no LLM call
    bad = subprocess.run(
        [*report_command, "--query", "NoSuchField = 1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert "Temporal refused the list" in bad.stderr


def test_a_fallback_chain_with_limits_runs_on_a_worker(workers: Workers) -> None:
    workers.start(concurrency=2)
    chain = ProviderSpec.fallback(
        ProviderSpec.factory(f"{FLOWS}:down"),
        ProviderSpec.factory(f"{FLOWS}:scripted").with_limits(max_concurrent=1),
    )

    async def scenario(client: Any) -> list[agtl.Result[Any]]:
        handles = [
            await start(client, workers, "answer", {"prompt": f"hi {i}"}, provider=chain)
            for i in range(2)
        ]
        return [await handle.result() for handle in handles]

    for i, result in enumerate(with_client(workers.address, scenario)):
        assert result.value == f"echo: hi {i}"
        attempts = result.summary.llm_calls[0].details["attempts"]
        assert isinstance(attempts, list)
        assert [a["outcome"] for a in attempts] == ["error", "answered"]
        assert attempts[0]["error"] == "ServerError: 503: down for maintenance"
        assert "queue_wait" in attempts[1]["details"]  # the second provider's limits applied


def test_an_agent_team_runs_on_a_worker_with_its_tree_in_the_result(workers: Workers) -> None:
    workers.start(concurrency=2)

    async def scenario(client: Any) -> agtl.Result[Any]:
        handle = await start(
            client,
            workers,
            "team_workflow",
            {"prompt": "capital?"},
            provider=ProviderSpec.factory(f"{FLOWS}:team_model"),
        )
        return await handle.result()

    result = with_client(workers.address, scenario)
    assert result.value == "planner says: researcher says: note on capital?"
    assert {c.details["agent"] for c in result.summary.llm_calls} == {"planner"}
    [child] = result.summary.children
    assert child.status is agtl.Status.SUCCEEDED
    assert child.usage.output_tokens == 1 + 4  # the researcher's two calls


def test_a_soft_cancel_from_the_client_lets_the_reply_finish(
    workers: Workers, tmp_path: Path
) -> None:
    workers.start(concurrency=2)
    log = tmp_path / "calls.log"

    async def scenario(client: Any) -> agtl.Result[Any]:
        handle = await start(
            client,
            workers,
            "answer",
            {"prompt": "slow story"},
            provider=slow_spec(log, chunks=40),
            timeout=60,
        )
        await until_streaming([handle])
        with pytest.raises(agtl.InvalidArgumentError, match="mode"):
            await handle.cancel(mode="gentle")
        await handle.cancel("later", mode="soft")
        return await handle.result()

    result = with_client(workers.address, scenario)
    assert result.canceled
    assert result.cancel is not None
    assert (result.cancel.mode, result.cancel.reason) == ("soft", "later")
    assert result.partial is not None
    assert result.partial.text == "".join(f"word{i} " for i in range(40))  # all of it
    assert result.summary.llm_calls[0].stop_reason is agtl.StopReason.EOS
