"""Evals on Temporal: every case an ``agtl.temporal.submit``, run by workers anywhere.

:func:`executor` makes what ``agtl.evals.run(..., executor=...)`` calls for each case. The
case's workflow id is ``<prefix>-<case id>-<repeat>``: submitting it again (a resumed run,
or a run repeated with the same prefix) returns the execution Temporal already has, running
or finished, and never starts the case twice. A cancel of the run cancels each submitted
case through Temporal, with the run's reason.

The Temporal SDK runs on asyncio and a run on trio, so the client lives on an asyncio loop of
its own thread, for as long as the ``async with`` block; every call crosses to it and back,
and a trio cancel of a call cancels its asyncio side.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import trio

from agtl import temporal
from agtl.evals._dataset import Case
from agtl.evals._running import Executor
from agtl.result import Result
from agtl.signals import CancelSignal
from agtl.temporal import ProviderSpec

__all__ = ["executor"]

T = TypeVar("T")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class _Loop:
    """An asyncio loop on a thread of its own, for the Temporal client."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="agtl-evals-temporal", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()

    async def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run ``make()`` on the loop and wait for it here; a cancel here cancels it there."""

        async def run() -> T:
            return await make()

        future = asyncio.run_coroutine_threadsafe(run(), self.loop)
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        future.add_done_callback(lambda _: token.run_sync_soon(done.set))
        try:
            await done.wait()
        except trio.Cancelled:
            future.cancel()
            with trio.move_on_after(5, shield=True):
                await done.wait()
            raise
        return future.result()


@contextlib.asynccontextmanager
async def executor(
    workflow: str,
    provider: ProviderSpec,
    *,
    address: str | None = None,
    namespace: str | None = None,
    profile: str | None = None,
    task_queue: str = temporal.DEFAULT_TASK_QUEUE,
    prefix: str = "agtl-eval",
) -> AsyncIterator[Executor]:
    """An executor that submits each case of a run to Temporal (see the module's
    description): ``async with executor("flows:answer", ProviderSpec.local()) as run_on:
    await agtl.evals.run(..., executor=run_on)``. ``workflow`` is the import path workers
    load; ``provider`` what they build."""
    loop = _Loop()
    loop.start()
    try:
        # The only reference to the client: dropped on its loop when the block ends.
        held = [
            await loop.call(lambda: temporal.connect(address, namespace=namespace, profile=profile))
        ]

        async def run_case(
            case: Case,
            repeat: int,
            signal: CancelSignal,
            timeout: float | None,  # noqa: ASYNC109 - the execution's bound, passed on
        ) -> Result[Any]:
            identifier = _UNSAFE.sub("_", f"{prefix}-{case.id}-{repeat}")
            handle = await loop.call(
                lambda: temporal.submit(
                    held[0],
                    workflow,
                    case.input,
                    provider=provider,
                    timeout=timeout,
                    task_queue=task_queue,
                    id=identifier,
                    check=False,
                )
            )
            async with trio.open_nursery() as nursery:

                async def cancel_on_signal() -> None:
                    await signal.wait()
                    await loop.call(lambda: handle.cancel(signal.reason))

                nursery.start_soon(cancel_on_signal)
                result = await loop.call(handle.result)
                nursery.cancel_scope.cancel()
            return result

        try:
            yield run_case
        finally:

            async def drop() -> None:  # the SDK's native client goes on its own loop
                held.clear()  # (temporalio/sdk-python#300)

            with trio.move_on_after(5, shield=True):
                await loop.call(drop)
    finally:
        loop.stop()
