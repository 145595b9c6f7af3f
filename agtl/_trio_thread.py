"""Calling into a trio run safely from whatever thread we happen to be on."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import trio


def current_token() -> trio.lowlevel.TrioToken | None:
    """The token of the trio run on this thread, or ``None`` outside any run."""
    try:
        return trio.lowlevel.current_trio_token()
    except RuntimeError:
        return None


def in_task_of(token: trio.lowlevel.TrioToken) -> bool:
    """Whether a task of the run of ``token`` is running on this thread right now.

    Not the same as the run being on this thread: a trio guest run on an asyncio loop keeps
    its run state on the loop's thread between its ticks, while asyncio code runs there.
    Trio may only be driven directly from inside one of its tasks.
    """
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return trio.lowlevel.current_trio_token() is token


def call_in_run(token: trio.lowlevel.TrioToken, fn: Callable[[], object]) -> None:
    """Run ``fn`` on the trio run of ``token``: now if a task of it is running here, else
    soon from its loop (which also wakes a guest run waiting between ticks).

    A run that already finished has nothing left to act on, so that case is a no-op.
    """
    if in_task_of(token):
        fn()
        return
    with contextlib.suppress(trio.RunFinishedError):
        token.run_sync_soon(fn)
