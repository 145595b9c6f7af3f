"""The raw Temporal baseline: the same work as an agtl execution, with the SDK alone.

A workflow that runs one activity, which waits as long as the scripted model's call and
returns its text; the worker is configured as ``agtl worker`` configures its own (the same
slots, no workflow sandbox). ``python -m bench._raw_temporal ADDRESS QUEUE SLOTS`` serves it
until SIGTERM or SIGINT, printing "serving task queue QUEUE" once it polls.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import sys
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

WORKFLOW = "bench.RawCall"


@activity.defn(name="bench.raw_call")
async def raw_call(seconds: float) -> str:
    """What the scripted model does for one call: wait, then answer."""
    await asyncio.sleep(seconds)
    return "ok"


@workflow.defn(name=WORKFLOW, sandboxed=False)
class RawCall:
    @workflow.run
    async def run(self, seconds: float) -> str:
        return str(
            await workflow.execute_activity(
                raw_call, seconds, start_to_close_timeout=dt.timedelta(seconds=120)
            )
        )


async def submit_all(
    client: Client, queue: str, count: int, seconds: float, *, tag: str
) -> list[Any]:
    """Start ``count`` workflows at once and wait for every answer."""
    handles = await asyncio.gather(
        *(
            client.start_workflow(WORKFLOW, seconds, id=f"raw-{queue}-{tag}-{i}", task_queue=queue)
            for i in range(count)
        )
    )
    return list(await asyncio.gather(*(handle.result() for handle in handles)))


async def _serve(address: str, queue: str, slots: int) -> None:
    client = await Client.connect(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    worker = Worker(
        client,
        task_queue=queue,
        workflows=[RawCall],
        activities=[raw_call],
        max_concurrent_activities=slots,
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    async with worker:
        print(f"serving task queue {queue}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1], sys.argv[2], int(sys.argv[3])))
