"""A nursery held open by a class-based async context manager, from its ``__aenter__`` to its
``__aexit__``, for streams whose tasks must outlive one read but not the ``async with``
block (a tool loop's steps, guardrails beside a model call). It is entered by hand, never
across a ``yield``: the streams are classes, so the caller's block nests inside it properly.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

import trio

from agtl._groups import raise_collapsed

__all__ = ["HeldNursery"]


class HeldNursery:
    """One nursery, entered with :meth:`enter` and left once with :meth:`leave`."""

    __slots__ = ("_manager", "nursery")

    def __init__(self) -> None:
        self._manager: AbstractAsyncContextManager[trio.Nursery] | None = None
        self.nursery: trio.Nursery | None = None

    @property
    def open(self) -> bool:
        return self._manager is not None

    async def enter(self) -> trio.Nursery:
        manager = trio.open_nursery()
        self.nursery = await manager.__aenter__()
        self._manager = manager
        return self.nursery

    async def leave(self, exc: BaseException | None, *, cancel: bool) -> None:
        """Leave it (once; again does nothing), cancelling what still runs in it first if
        ``cancel``; a lone error of its tasks surfaces as itself, not in a group."""
        manager, self._manager = self._manager, None
        if manager is None:
            return
        if cancel and self.nursery is not None:
            self.nursery.cancel_scope.cancel()
        try:
            await manager.__aexit__(type(exc) if exc else None, exc, None)
        except BaseExceptionGroup as group:
            raise_collapsed(group)
