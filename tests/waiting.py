"""Waiting on the event a test means, under a deadline, so that a hang is a red test.

A test that waits for "ten deltas arrived" or "the worker is writing" must not hang the suite
when that never happens: it fails, naming what it waited for.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final

import pytest
import trio

#: Generous on purpose: a busy CI machine is slow, but never this slow.
EVENT_DEADLINE: Final = 120.0


async def wait_for(event: trio.Event, what: str, seconds: float = EVENT_DEADLINE) -> None:
    """Wait for ``event``; fail the test if ``what`` did not happen within ``seconds``."""
    with trio.move_on_after(seconds) as scope:
        await event.wait()
    if scope.cancelled_caught:
        pytest.fail(f"{what} did not happen within {seconds:g}s")


async def wait_for_thread_event(
    event: threading.Event, what: str, seconds: float = EVENT_DEADLINE
) -> None:
    """Wait for a ``threading.Event`` without blocking trio, cancellably, under a deadline."""
    with trio.move_on_after(seconds) as scope:
        while not await trio.to_thread.run_sync(event.wait, 0.05):
            pass
    if scope.cancelled_caught:
        pytest.fail(f"{what} did not happen within {seconds:g}s")


async def wait_until(
    condition: Callable[[], bool], what: str, seconds: float = EVENT_DEADLINE
) -> None:
    """Poll ``condition`` (state no event announces: a thread started, a queue filled) every
    millisecond; fail the test if ``what`` did not happen within ``seconds``."""
    with trio.move_on_after(seconds) as scope:
        while not condition():  # noqa: ASYNC110 - nothing to wait on but the state itself
            await trio.sleep(0.001)
    if scope.cancelled_caught:
        pytest.fail(f"{what} did not happen within {seconds:g}s")
