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


def call_in_run(token: trio.lowlevel.TrioToken, fn: Callable[[], object]) -> None:
    """Run ``fn`` on the trio run of ``token``: now if we are on it, else soon from its loop.

    A run that already finished has nothing left to act on, so that case is a no-op.
    """
    if current_token() is token:
        fn()
        return
    with contextlib.suppress(trio.RunFinishedError):
        token.run_sync_soon(fn)
