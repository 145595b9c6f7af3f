"""A person in the loop: tool calls that wait for an approval, decided from anywhere.

An execution owns one :class:`ApprovalDesk`. The tool runner opens a request on it when the
model calls a tool that needs approval and waits there, inside the call, so the wait is a child
of the execution: a cancel from any source ends it (the call is recorded cancelled and the tool
never runs), and a timeout denies it. Anyone holding the execution decides, from any thread,
like ``cancel``: ``execution.approve(call_id)``, ``execution.deny(call_id, reason)``, or
``request.approve()`` on a request read from ``execution.approval_requests()``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import attrs
import trio

from agtl._trio_thread import call_in_run
from agtl.errors import InvalidArgumentError
from agtl.summary import Approval

__all__ = ["ApprovalDesk", "ApprovalRequest"]


@attrs.frozen
class ApprovalRequest:
    """A tool call waiting for a person's decision.

    ``id`` is the tool call's id (what ``approve``/``deny`` take), ``requested_at`` seconds
    since the execution started. ``approve()`` and ``deny()`` decide it, from any thread.
    """

    id: str
    tool: str
    arguments: Mapping[str, Any]
    execution_id: str
    requested_at: float
    _desk: ApprovalDesk = attrs.field(alias="desk", eq=False, repr=False)

    def approve(self, by: str | None = None) -> None:
        """Let the call run (``by``: who decided, for the record)."""
        self._desk.decide(self.id, approved=True, reason=None, by=by)

    def deny(self, reason: str | None = None, by: str | None = None) -> None:
        """Refuse the call: it never runs, and the model is told ``reason``."""
        self._desk.decide(self.id, approved=False, reason=reason, by=by)


@attrs.define(eq=False)
class _Open:
    request: ApprovalRequest
    decided: trio.Event
    decision: Approval | None = None


class ApprovalDesk:
    """The open approval requests of one execution: opened and awaited on its trio run,
    decided from any thread (the first decision wins; a second is an error)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, _Open] = {}
        self._decided: set[str] = set()
        self._token: trio.lowlevel.TrioToken | None = None
        self._log: list[ApprovalRequest] = []
        self._closed = False
        self._waiters: list[trio.Event] = []

    # -- the trio side -----------------------------------------------------------------------
    async def ask(
        self, request: ApprovalRequest, within: float | None, now: Callable[[], float]
    ) -> Approval:
        """Open ``request`` and wait for its decision (``within`` seconds at most: then it is
        denied). A cancel ends the wait and withdraws the request."""
        opened = _Open(request, trio.Event())
        with self._lock:
            self._token = trio.lowlevel.current_trio_token()
            self._open[request.id] = opened
            self._log.append(request)
        self._wake_readers()
        started = now()
        try:
            with trio.move_on_after(math.inf if within is None else within):
                await opened.decided.wait()
        finally:
            with self._lock:
                self._open.pop(request.id, None)
                self._decided.add(request.id)
                quiet = not self._open
            if quiet:
                self._wake_readers()  # whoever waits for no request to be open
        waited = now() - started
        if opened.decision is None:
            return Approval(False, f"no decision within {within:g} s", None, waited)
        return attrs.evolve(opened.decision, waited=waited)

    def unique_id(self, wanted: str) -> str:
        """``wanted``, or it with a suffix when a request of that id is already known."""
        with self._lock:
            taken = self._open.keys() | self._decided
        candidate, n = wanted, 1
        while candidate in taken:
            n += 1
            candidate = f"{wanted}#{n}"
        return candidate

    def close(self) -> None:
        """The execution ended: iterators of requests end too."""
        with self._lock:
            self._closed = True
        self._wake_readers()

    # -- any thread --------------------------------------------------------------------------
    def decide(self, call_id: str, *, approved: bool, reason: str | None, by: str | None) -> None:
        """Decide the open request ``call_id``; an unknown or decided one is refused."""
        if not isinstance(call_id, str):
            raise InvalidArgumentError("call_id", f"must be a str, not {type(call_id).__name__}")
        for name, value in (("reason", reason), ("by", by)):
            if value is not None and not isinstance(value, str):
                raise InvalidArgumentError(name, f"must be a str, not {type(value).__name__}")
        with self._lock:
            opened = self._open.get(call_id)
            if opened is None or opened.decision is not None:
                waiting = ", ".join(repr(i) for i in sorted(self._open)) or "none"
                if opened is not None or call_id in self._decided:
                    problem = f"{call_id!r} was already decided (open requests: {waiting})"
                else:
                    problem = f"{call_id!r} is not an open approval request (open: {waiting})"
                raise InvalidArgumentError("call_id", problem)
            opened.decision = Approval(approved, reason, by)
            token = self._token
        if token is not None:
            call_in_run(token, opened.decided.set)

    @property
    def decided(self) -> frozenset[str]:
        """The ids of the requests that are over."""
        with self._lock:
            return frozenset(self._decided)

    @property
    def pending(self) -> tuple[ApprovalRequest, ...]:
        """The requests waiting for a decision now, oldest first."""
        with self._lock:
            return tuple(o.request for o in self._open.values() if o.decision is None)

    async def requests(self) -> AsyncIterator[ApprovalRequest]:
        """Every request of the execution as it opens (those already open first), until the
        execution ends. Each reader gets each request once."""
        seen = 0
        while True:
            with self._lock:
                fresh = self._log[seen:]
                closed = self._closed
                if not fresh and not closed:
                    waiter = trio.Event()
                    self._waiters.append(waiter)
            if fresh:
                seen += len(fresh)
                for request in fresh:
                    yield request
                continue
            if closed:
                return
            await waiter.wait()

    async def settled(self) -> None:
        """Return once no request is open (at once if none is); on the trio run."""
        while True:
            with self._lock:
                if not self._open or self._closed:
                    return
                waiter = trio.Event()
                self._waiters.append(waiter)
            await waiter.wait()

    def _wake_readers(self) -> None:
        with self._lock:
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.set()
