"""A worker: serves the ready workflow and the agtl activity on one task queue."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from agtl import aio
from agtl._vocabulary import SummarySink
from agtl.errors import InvalidArgumentError
from agtl.temporal._activity import Executions
from agtl.temporal._client import DEFAULT_TASK_QUEUE
from agtl.temporal._workflow import ExecutionWorkflow
from agtl.validation import check_str, type_name

__all__ = ["serve"]

#: After a stop (and its drain), how long cancelled executions get to report their Results
#: before Temporal's worker cancels them itself.
STOP_GRACE = dt.timedelta(seconds=30)


async def serve(
    client: Client,
    until: Awaitable[str],
    *,
    task_queue: str = DEFAULT_TASK_QUEUE,
    concurrency: int = 4,
    summary_sink: SummarySink | None = None,
    identity: str | None = None,
    heartbeat_every: float = 0.5,
    drain: float = 0.0,
    hurry: Awaitable[object] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Run agtl executions from ``task_queue`` until ``until`` gives a reason to stop.

    At most ``concurrency`` executions run at once, all on this loop's one trio guest run.
    On stop, the worker takes no more work, cancels what runs with the reason (each Result,
    ``canceled`` with its partial and summary, still goes back to its workflow), and returns
    once they have ended. ``summary_sink`` receives every execution's Result on this worker.

    ``heartbeat_every`` (seconds) is how often a running execution reports to Temporal at
    most. A cancel from Temporal arrives with a heartbeat's reply, so it also bounds how long
    a cancel takes to land; raise it to spare a busy server.

    With ``drain`` (seconds), a stop first lets what runs finish: the worker takes no more
    work at once, and cancels (with the reason) only what is still running ``drain`` seconds
    later, or as soon as ``hurry`` is done (a second Ctrl-C, say). A rolling restart then
    loses no execution that ends within that time.
    """
    if not isinstance(client, Client):
        raise InvalidArgumentError(
            "client", f"must be a temporalio Client, not {type_name(client)}"
        )
    if not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidArgumentError("concurrency", f"must be an int >= 1, not {concurrency!r}")
    if not isinstance(heartbeat_every, int | float) or not 0 < heartbeat_every < math.inf:
        raise InvalidArgumentError(
            "heartbeat_every", f"must be a positive number of seconds, not {heartbeat_every!r}"
        )
    if not isinstance(drain, int | float) or not 0 <= drain < math.inf:
        raise InvalidArgumentError("drain", f"must be a number of seconds >= 0, not {drain!r}")
    executions = Executions(
        summary_sink=summary_sink,
        heartbeat_every=heartbeat_every,
        identity=identity or client.identity,
    )
    worker = Worker(
        client,
        task_queue=check_str("task_queue", task_queue),
        workflows=[ExecutionWorkflow],
        activities=[executions.execute],
        max_concurrent_activities=concurrency,
        # Temporal cancels what still runs this long after the stop; agtl cancels it first,
        # with the reason, once the drain is over.
        graceful_shutdown_timeout=STOP_GRACE + dt.timedelta(seconds=drain),
        max_heartbeat_throttle_interval=dt.timedelta(seconds=heartbeat_every),
        default_heartbeat_throttle_interval=dt.timedelta(seconds=heartbeat_every),
        identity=identity,
        # The one workflow is agtl's own: a few deterministic lines that start an activity
        # and wait. Temporal's sandbox guards user workflow code against nondeterminism; here
        # it would only cost its module checks on every workflow task (cProfile of a worker
        # running 200 executions: 1.6 M Python calls with it, 1.0 M without), so it is off.
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    try:
        async with worker:
            if on_ready is not None:
                on_ready()
            reason = await until
            if drain:
                stopping = asyncio.ensure_future(worker.shutdown())  # takes no more work
                try:
                    if not await _drained(executions, drain, hurry):
                        executions.cancel_all(reason)
                finally:
                    await stopping
            else:
                executions.cancel_all(reason)
    finally:
        await executions.aclose()
        await aio.shutdown()


async def _drained(executions: Executions, seconds: float, hurry: Awaitable[object] | None) -> bool:
    """Whether the running executions all ended within ``seconds``, unless ``hurry`` came first."""
    drained = asyncio.ensure_future(executions.drain(seconds))
    waiting: set[asyncio.Future[Any]] = {drained}
    if hurry is not None:
        waiting.add(asyncio.ensure_future(hurry))
    done, pending = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    for future in pending:
        future.cancel()
    return drained in done and drained.result()
