"""A person in the loop: tool calls that wait for an approval, and workflows that wait for an
answer (``session.request_input``), decided from anywhere.

An execution owns one :class:`ApprovalDesk`. The tool runner opens a request on it when the
model calls a tool that needs approval and waits there, inside the call, so the wait is a child
of the execution: a cancel from any source ends it (the call is recorded cancelled and the tool
never runs), and a timeout denies it. Anyone holding the execution decides, from any thread,
like ``cancel``: ``execution.approve(call_id)``, ``execution.deny(call_id, reason)``, or
``request.approve()`` on a request read from ``execution.approval_requests()``.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any, Final

import attrs
import pydantic
import trio

from agtl._trio_thread import call_in_run
from agtl.errors import InputTimeoutError, InvalidArgumentError
from agtl.summary import Approval

__all__ = [
    "INPUT_REQUESTED",
    "ApprovalDesk",
    "ApprovalRequest",
    "InputRequest",
    "PersonInTheLoop",
    "input_adapter",
]

#: The event a streaming execution delivers when its workflow waits for a person's answer.
INPUT_REQUESTED: Final = "input_requested"


def input_adapter(output_type: Any) -> pydantic.TypeAdapter[Any]:
    """How an answer of ``output_type`` is validated; a type pydantic cannot handle is an
    ``InvalidArgumentError`` for ``output_type``."""
    try:
        return pydantic.TypeAdapter(output_type)
    except pydantic.PydanticUserError as error:
        raise InvalidArgumentError(
            "output_type", f"cannot validate answers as it: {error}"
        ) from None


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
    #: The agents from the root execution's down to the one whose tool asks.
    path: tuple[str, ...] = ()

    def approve(self, by: str | None = None) -> None:
        """Let the call run (``by``: who decided, for the record)."""
        self._desk.decide(self.id, approved=True, reason=None, by=by)

    def deny(self, reason: str | None = None, by: str | None = None) -> None:
        """Refuse the call: it never runs, and the model is told ``reason``."""
        self._desk.decide(self.id, approved=False, reason=reason, by=by)


@attrs.frozen
class InputRequest:
    """A workflow waiting for a person's answer (``session.request_input``).

    ``schema`` is the JSON schema the answer must fit; ``provide(value)`` answers, from any
    thread (a value that does not fit raises ``InvalidArgumentError``; the request stays open).
    """

    id: str
    prompt: str
    schema: Mapping[str, Any]
    execution_id: str
    requested_at: float
    _desk: ApprovalDesk = attrs.field(alias="desk", eq=False, repr=False)

    def provide(self, value: Any) -> None:
        """Answer the request with ``value`` (validated against its type)."""
        self._desk.provide(self.id, value)


@attrs.define(eq=False)
class _Asked:
    request: InputRequest
    adapter: pydantic.TypeAdapter[Any]
    answered: trio.Event
    value: Any = None
    done: bool = False


@attrs.define(eq=False)
class _Open:
    request: ApprovalRequest
    decided: trio.Event
    decision: Approval | None = None


class ApprovalDesk:
    """The open approval requests and questions of one execution: opened and awaited on its
    trio run, decided or answered from any thread (the first decision wins; a second is an
    error)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, _Open] = {}
        self._decided: set[str] = set()
        self._token: trio.lowlevel.TrioToken | None = None
        self._log: list[ApprovalRequest | InputRequest] = []
        self._closed = False
        self._waiters: list[trio.Event] = []
        self._asked: dict[str, _Asked] = {}

    # -- the trio side -----------------------------------------------------------------------
    async def ask(
        self,
        request: ApprovalRequest,
        within: float | None,
        now: Callable[[], float],
        on_open: Callable[[], None] | None = None,
    ) -> Approval:
        """Open ``request`` and wait for its decision (``within`` seconds at most: then it is
        denied); ``on_open`` is called once it is open. A cancel ends the wait and withdraws
        the request."""
        opened = _Open(request, trio.Event())
        with self._lock:
            self._token = trio.lowlevel.current_trio_token()
            self._open[request.id] = opened
            self._log.append(request)
        self._wake_readers()
        if on_open is not None:
            on_open()
        started = now()
        try:
            with trio.move_on_after(math.inf if within is None else within):
                await opened.decided.wait()
        finally:
            with self._lock:
                self._open.pop(request.id, None)
                self._decided.add(request.id)
                quiet = not self._open and not self._asked
            if quiet:
                self._wake_readers()  # whoever waits for no request to be open
        waited = now() - started
        if opened.decision is None:
            return Approval(False, f"no decision within {within:g} s", None, waited)
        return attrs.evolve(opened.decision, waited=waited)

    async def ask_input(
        self,
        request: InputRequest,
        adapter: pydantic.TypeAdapter[Any],
        within: float | None,
        on_open: Callable[[], None] | None = None,
    ) -> Any:
        """Open ``request`` and wait for its answer (validated by ``adapter``); no answer
        within ``within`` seconds raises :class:`InputTimeoutError`. A cancel withdraws it."""
        asked = _Asked(request, adapter, trio.Event())
        with self._lock:
            self._token = trio.lowlevel.current_trio_token()
            self._asked[request.id] = asked
            self._log.append(request)
        self._wake_readers()
        if on_open is not None:
            on_open()
        try:
            with trio.move_on_after(math.inf if within is None else within):
                await asked.answered.wait()
        finally:
            with self._lock:
                self._asked.pop(request.id, None)
                self._decided.add(request.id)
                quiet = not self._open and not self._asked
            if quiet:
                self._wake_readers()
        if not asked.done:
            raise InputTimeoutError(f"no answer to {request.prompt!r} within {within:g} s")
        return asked.value

    def provide(self, request_id: str, value: Any) -> None:
        """Answer the open input request ``request_id``, from any thread."""
        if not isinstance(request_id, str):
            raise InvalidArgumentError(
                "request_id", f"must be a str, not {type(request_id).__name__}"
            )
        with self._lock:
            asked = self._asked.get(request_id)
            if asked is None or asked.done:
                waiting = ", ".join(repr(i) for i in sorted(self._asked)) or "none"
                if asked is not None or request_id in self._decided:
                    problem = f"{request_id!r} was already answered (open: {waiting})"
                else:
                    problem = f"{request_id!r} is not an open input request (open: {waiting})"
                raise InvalidArgumentError("request_id", problem)
            try:
                checked = asked.adapter.validate_python(value)
            except pydantic.ValidationError as error:
                problems = "; ".join(e["msg"] for e in error.errors()) or str(error)
                raise InvalidArgumentError(
                    "value", f"does not fit the request: {problems}"
                ) from None
            asked.value, asked.done = checked, True
            token = self._token
        if token is not None:
            call_in_run(token, asked.answered.set)

    @property
    def pending_inputs(self) -> tuple[InputRequest, ...]:
        """The input requests waiting for an answer now, oldest first."""
        with self._lock:
            return tuple(a.request for a in self._asked.values() if not a.done)

    def unique_id(self, wanted: str) -> str:
        """``wanted``, or it with a suffix when a request of that id is already known."""
        with self._lock:
            taken = self._open.keys() | self._asked.keys() | self._decided
        candidate, n = wanted, 1
        while candidate in taken:
            n += 1
            candidate = f"{wanted}#{n}"
        return candidate

    def settled_earlier(self, request_id: str) -> None:
        """``request_id`` was decided in an earlier attempt: it is over here too."""
        with self._lock:
            self._decided.add(request_id)

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

    async def requests(self) -> AsyncGenerator[ApprovalRequest | InputRequest, None]:
        """Every request of the execution, approval or question, as it opens (those already
        opened first), until the execution ends. Each reader gets each request once."""
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
                if (not self._open and not self._asked) or self._closed:
                    return
                waiter = trio.Event()
                self._waiters.append(waiter)
            await waiter.wait()

    def _wake_readers(self) -> None:
        with self._lock:
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.set()


class PersonInTheLoop:
    """What an execution's handle offers a person in the loop: approve or deny tool calls,
    answer the workflow's questions, from any thread (mixed into ``Execution``)."""

    __slots__ = ()

    def _desk(self) -> ApprovalDesk:
        """The execution's desk, made on first use."""
        raise NotImplementedError

    def _desk_if_open(self) -> ApprovalDesk | None:
        """The execution's desk if anything made it yet."""
        raise NotImplementedError

    def approve(self, call_id: str, *, by: str | None = None) -> None:
        """Let the tool call ``call_id``, waiting for approval, run. Any thread; an unknown
        or already decided id raises :class:`InvalidArgumentError` and changes nothing."""
        self._desk().decide(call_id, approved=True, reason=None, by=by)

    def deny(self, call_id: str, reason: str | None = None, *, by: str | None = None) -> None:
        """Refuse the tool call ``call_id``: it never runs, its record says ``denied`` and the
        model is told ``reason``. Any thread; like :meth:`approve` for a wrong id."""
        self._desk().decide(call_id, approved=False, reason=reason, by=by)

    @property
    def pending_approvals(self) -> tuple[ApprovalRequest, ...]:
        """The tool calls waiting for a decision now, oldest first."""
        desk = self._desk_if_open()
        return () if desk is None else desk.pending

    @property
    def pending_inputs(self) -> tuple[InputRequest, ...]:
        """The workflow's questions waiting for an answer now (``session.request_input``)."""
        desk = self._desk_if_open()
        return () if desk is None else desk.pending_inputs

    def provide_input(self, request_id: str, value: Any) -> None:
        """Answer the workflow's open question ``request_id``; any thread. A value that does
        not fit its type, or an unknown or answered id, raises :class:`InvalidArgumentError`
        and the request stays as it was."""
        self._desk().provide(request_id, value)

    @property
    def decided_approvals(self) -> frozenset[str]:
        """The ids of this execution's approval requests that are over (decided, timed out
        or withdrawn by a cancel)."""
        desk = self._desk_if_open()
        return frozenset() if desk is None else desk.decided

    async def approvals_settled(self) -> None:
        """Return once no approval request of this execution is open."""
        desk = self._desk_if_open()
        if desk is not None:
            await desk.settled()

    async def approval_requests(self) -> AsyncIterator[ApprovalRequest]:
        """Every approval request of this execution as it opens (open ones first), until the
        execution ends: ``async for request in execution.approval_requests(): ...``."""
        async with contextlib.aclosing(self._desk().requests()) as requests:
            async for request in requests:
                if isinstance(request, ApprovalRequest):
                    yield request

    async def input_requests(self) -> AsyncIterator[InputRequest]:
        """Every question of this execution's workflow (``session.request_input``) as it
        opens, until the execution ends: ``request.provide(value)`` answers it."""
        async with contextlib.aclosing(self._desk().requests()) as requests:
            async for request in requests:
                if isinstance(request, InputRequest):
                    yield request
