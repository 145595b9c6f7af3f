"""Executions: a workflow run inside our own cancel scope, ending in one frozen Result.

The scope merges the handle's ``cancel()``, external signals, the ``timeout=`` and usage
limits. The outcome is classified once, when the workflow's task ends, in this order:

1. a terminal ``error`` event was delivered  → failed
2. a terminal ``complete`` event was delivered → succeeded
3. an enclosing scope of the caller cancelled us → canceled (``enclosing_scope``); the
   ``trio.Cancelled`` keeps propagating after hooks ran
4. our own scope was cancelled                 → canceled, with source and reason
5. any other exception (groups unwrapped)     → failed
6. a generator that ended with no terminal event → failed (``NoTerminalEventError``)
7. a coroutine that returned                  → succeeded with its value
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from types import FunctionType, TracebackType
from typing import Any, ClassVar, Final, Generic, Self, TypeVar

import trio

from agtl import _observe
from agtl._approvals import ApprovalDesk, PersonInTheLoop
from agtl._cancel import Cancellation
from agtl._context import ExecutionContext
from agtl._event_log import EventStream
from agtl._groups import contains_cancelled, is_cancellation, leaves, raise_collapsed, unwrap
from agtl._logging import ExecutionLogger
from agtl._runtime import Runtime
from agtl._state import ExecutionState
from agtl._tree import Node
from agtl._vocabulary import CancelInfo, CancelSource, Partial, Status, StopReason
from agtl.errors import ExecutionClosedError, InvalidArgumentError, NoTerminalEventError
from agtl.events import ERROR, Event
from agtl.limits import UsageLimits
from agtl.result import Result
from agtl.session import Session
from agtl.signals import CancelSignal
from agtl.validation import (
    check_count,
    check_items,
    check_optional_seconds,
    require_trio,
    type_name,
)

__all__ = ["Execution", "SimpleExecution", "StreamingExecution"]

T = TypeVar("T")

#: How long each on_done hook may run, shielded from cancellation, before it is cut off.
HOOK_GRACE_SECONDS: Final = 5.0

#: The execution whose workflow is running in this context (its place in its tree): an
#: execution started here is its child. trio tasks inherit it from the task that started them.
_running: contextvars.ContextVar[Node | None] = contextvars.ContextVar(
    "agtl_running_execution", default=None
)


class Execution(PersonInTheLoop, Generic[T]):
    """The handle of one run of a workflow. Create it with a provider's ``*_execution``.

    ``async with`` starts it in the background (leaving the block before it finished
    cancels it and waits for it); ``await execution.result()`` without ``async with`` runs it
    in the calling task. It runs at most once.
    """

    _streaming: ClassVar[bool] = False
    # Slots: thousands of executions may be alive at once.
    __slots__ = (
        "__weakref__",
        "_began",
        "_cancellation",
        "_claimed",
        "_finished",
        "_limits",
        "_nursery_manager",
        "_outcome",
        "_parent",
        "_runtime",
        "_signals",
        "_state",
        "_timeout",
        "_workflow",
        "execution_id",
    )

    def __init__(
        self,
        runtime: Runtime,
        workflow: Callable[[Session], Any],
        *,
        signal: CancelSignal | Sequence[CancelSignal] | None,
        timeout: float | None,
        limits: UsageLimits | None,
        buffer_size: int | None = None,
    ) -> None:
        self._signals = _signals(signal)
        self._timeout = check_optional_seconds("timeout", timeout)
        if limits is not None and not isinstance(limits, UsageLimits):
            raise InvalidArgumentError(
                "limits", f"must be an agtl.UsageLimits, not {type_name(limits)}"
            )
        if buffer_size is not None:
            check_count("buffer_size", buffer_size, minimum=1)
        self._limits = limits
        self._runtime = runtime
        self._workflow = workflow
        #: Unique id of this execution, known before it starts (for logs and correlation).
        self.execution_id: str = _new_execution_id()
        self._cancellation = Cancellation()
        self._state = ExecutionState(
            self.execution_id,
            self._cancellation,
            streaming=self._streaming,
            max_lag=buffer_size,
            workflow=_observe.workflow_name(workflow),
        )
        self._finished: trio.Event | None = None  # made when someone has to wait
        self._outcome: Result[T] | None = None
        self._claimed = False
        self._began = False
        self._parent: Node | None = None
        self._nursery_manager: contextlib.AbstractAsyncContextManager[trio.Nursery] | None = None

    # -- handle -------------------------------------------------------------------------------
    @property
    def outcome(self) -> Result[T] | None:
        """The frozen Result once the execution finished, else ``None``."""
        return self._outcome

    @property
    def started(self) -> bool:
        return self._claimed

    def cancel(self, reason: str | None = None) -> None:
        """Stop the execution (source ``handle``).

        Synchronous, idempotent, safe from any thread, and a no-op once the outcome is
        frozen. Before the start it means the workflow never runs.
        """
        if reason is not None and not isinstance(reason, str):
            raise InvalidArgumentError("reason", f"must be a str or None, not {type_name(reason)}")
        self._cancellation.request(CancelSource.HANDLE, reason)

    def stop(
        self, *, after: str = "call", grace: float | None = None, reason: str | None = None
    ) -> None:
        """Stop the execution softly, at its next boundary: once the running model call has
        ended (``after="call"``: the tools it asked for do not run), or the running step with
        its tool calls (``"step"``: no new model call starts). It then ends ``canceled`` with
        ``cancel.mode == "soft"`` and the complete last reply in its partial. Nothing is cut
        mid-reply. With ``grace``, a hard cancel follows after that many seconds if it has not
        stopped by then (its reason says so). Any thread, like :meth:`cancel`."""
        if after not in ("call", "step"):
            raise InvalidArgumentError("after", f"must be 'call' or 'step', not {after!r}")
        grace = check_optional_seconds("grace", grace)
        if reason is not None and not isinstance(reason, str):
            raise InvalidArgumentError("reason", f"must be a str or None, not {type_name(reason)}")
        self._cancellation.request_soft(after, reason, grace)

    def _cancel_from(self, source: CancelSource, reason: str) -> None:
        """Stop the execution for a cause that is not its handle (the asyncio bridge, Ctrl-C)."""
        self._cancellation.request(source, reason)

    def _desk(self) -> ApprovalDesk:
        return self._state.approval_desk()

    def _desk_if_open(self) -> ApprovalDesk | None:
        return self._state.approvals

    def _start_in(self, nursery: trio.Nursery) -> None:
        """Claim the execution and run it as a task of ``nursery`` (the asyncio bridge)."""
        self._claim()
        nursery.start_soon(self._run)

    async def result(self) -> Result[T]:
        """Wait for and return the Result; runs the execution here if nobody started it.

        Never raises for a failed or canceled execution (see :meth:`Result.unwrap`). If the
        caller's own scope cancels it while it runs here, ``trio.Cancelled`` propagates after
        the execution was finalized as canceled (``enclosing_scope``).
        """
        require_trio("execution.result()")
        if self._outcome is not None:
            await trio.lowlevel.checkpoint()
            return self._outcome
        if not self._claimed:
            self._claim()
            return await self._run()
        if self._finished is None:
            self._finished = trio.Event()
        await self._finished.wait()
        return self._final()

    def __await__(self) -> Generator[Any, None, Result[T]]:
        """``await execution`` is ``await execution.result()``."""
        return self.result().__await__()

    def _final(self) -> Result[T]:
        assert self._outcome is not None, "finished without an outcome"
        return self._outcome

    async def __aenter__(self) -> Self:
        # The nursery is entered by hand rather than through an AsyncExitStack: the stack's
        # deque costs about 1 KB per execution, over the scale budget (guides/architecture.md).
        # __aexit__ closes it on every path, as the stack's aclose() would.
        require_trio("`async with execution`")
        self._claim()
        manager = trio.open_nursery()
        nursery = await manager.__aenter__()
        self._nursery_manager = manager
        nursery.start_soon(self._run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._outcome is None:
            reason = (
                "left the `async with` block before the execution finished"
                if exc is None
                else f"the `async with` block raised {type(exc).__name__}"
            )
            self._cancellation.request(CancelSource.HANDLE, reason)
        manager, self._nursery_manager = self._nursery_manager, None
        assert manager is not None, "__aexit__ without __aenter__"
        try:
            await manager.__aexit__(None, None, None)
        except BaseExceptionGroup as group:
            raise_collapsed(group)

    def _claim(self) -> None:
        if self._claimed:
            raise ExecutionClosedError(
                f"execution {self.execution_id} was already started; an execution runs once "
                "(create a new one from the provider to run the workflow again)"
            )
        self._claimed = True
        parent = _running.get()
        if parent is not None and not parent.state.frozen:
            self._parent = parent
            self._state.parent_id = parent.state.execution_id
            # A person decides a child's requests where they decide the parent's.
            self._state.share_desk(parent.state.approval_desk())

    # -- running ------------------------------------------------------------------------------
    async def _run(self) -> Result[T]:
        state, runtime, cancellation = self._state, self._runtime, self._cancellation
        log = ExecutionLogger(
            runtime.logger, execution_id=self.execution_id, provider=runtime.provider_name
        )
        node = Node(state, self._limits, cancellation, parent=self._parent)
        session = Session(ExecutionContext(state, cancellation, runtime, self._limits, log, node))
        returned: Any = None
        escaped: BaseException | None = None
        log.debug("execution.started", streaming=self._streaming)
        trace = _observe.trace_execution(self.execution_id, state.workflow, self._streaming)
        state.trace = trace
        activated = trace.activate()
        running = _running.set(node)
        try:
            returned = await self._scoped(session)
        except BaseException as exc:
            escaped = exc
        finally:
            _running.reset(running)
            trace.deactivate(activated)
            cancellation.end()
        end = state.elapsed()
        state.frozen = True
        cancellation.freeze()
        result = self._classify(escaped, returned, end)
        self._outcome = result
        if self._parent is not None:
            self._parent.state.add_child(result.summary.as_child(result.status))
        trace.execution_finished(result)
        sink = runtime.summary_sink
        if sink is not None:
            try:
                sink.write(result)
            except Exception as exc:
                log.warning(
                    "execution.summary_sink_failed", error=type(exc).__name__, message=str(exc)
                )
        if state.hooks:
            await self._run_hooks(result, log)
        state.log.close()
        if state.approvals is not None and not state.shares_desk:
            state.approvals.close()
        if self._finished is not None:
            self._finished.set()
        log.debug(
            "execution.finished",
            status=result.status.value,
            duration=result.summary.duration,
            llm_calls=result.summary.llm_call_count,
            cancel_source=None if result.cancel is None else result.cancel.source.value,
            error=None if result.error is None else type(result.error).__name__,
        )
        if escaped is not None and _must_propagate(escaped):
            if isinstance(escaped, BaseExceptionGroup):
                raise_collapsed(escaped)
            raise escaped
        return result

    async def _scoped(self, session: Session) -> Any:
        """Run the workflow inside the execution's own cancel scope; return its value."""
        raise NotImplementedError

    def _begin(self, scope: trio.CancelScope) -> bool:
        """Make ``scope`` (just entered) the execution's; whether the workflow should start."""
        start = self._state.begin()
        self._began = self._cancellation.begin(
            scope, start=start, timeout=self._timeout, signals=self._signals
        )
        return self._began

    # -- outcome ------------------------------------------------------------------------------
    def _classify(self, escaped: BaseException | None, returned: Any, end: float) -> Result[T]:
        state = self._state
        summary = state.summary(end)
        events = tuple(state.log.events)

        def make(status: Status, **fields: Any) -> Result[T]:
            partial = None
            if status is not Status.SUCCEEDED:
                partial = self._partial(status, fields.get("error"), events)
            return Result(
                self.execution_id, status, summary, partial=partial, events=events, **fields
            )

        terminal = state.terminal
        if terminal is not None:
            if terminal.type == ERROR:
                return make(Status.FAILED, error=terminal.data["error"])
            return make(Status.SUCCEEDED, value=terminal.data)
        if escaped is not None and contains_cancelled(escaped):
            info = CancelInfo(
                CancelSource.ENCLOSING_SCOPE, "cancelled by an enclosing cancel scope", end
            )
            return make(Status.CANCELED, cancel=info)
        if not self._began:
            return make(Status.CANCELED, cancel=self._cancellation.before_start())
        cause = self._cancellation.cause()
        if cause is not None:
            return make(Status.CANCELED, cancel=cause)
        if escaped is not None:
            return make(Status.FAILED, error=unwrap(escaped))
        if self._streaming:
            error = NoTerminalEventError(
                "the workflow ended without delivering a terminal event: finish it with "
                "`yield await session.done(value)` or `yield await session.fail(error)`"
            )
            return make(Status.FAILED, error=error)
        return make(Status.SUCCEEDED, value=returned)

    def _partial(
        self, status: Status, error: BaseException | None, events: tuple[Event, ...]
    ) -> Partial:
        """The interrupted calls' delivered text (and that of a finished call the execution
        stopped at: over a budget, or a soft stop; paid-for text is never lost) and the
        events so far."""
        interrupted = []
        for call in self._state.calls:
            if (
                call.stop_reason is StopReason.CANCELLED
                or call.kept
                or (
                    status is Status.FAILED
                    and call.error is not None
                    and _caused_by(error, call.error)
                )
            ):
                interrupted.append(call)
        text = "".join(call.text for call in interrupted)
        objects = [c.partial_object for c in interrupted if c.partial_object is not None]
        return Partial(
            text,
            events,
            tuple(call.index for call in interrupted),
            objects[-1] if objects else None,
        )

    async def _run_hooks(self, result: Result[T], log: ExecutionLogger) -> None:
        for hook in reversed(self._state.hooks or ()):
            with trio.move_on_after(HOOK_GRACE_SECONDS, shield=True) as grace:
                try:
                    returned = hook(result)
                    if inspect.isawaitable(returned):
                        await returned
                except Exception as exc:
                    log.warning(
                        "execution.hook_failed",
                        hook=_describe(hook),
                        error=type(exc).__name__,
                        message=str(exc),
                    )
            if grace.cancelled_caught:
                log.warning(
                    "execution.hook_timed_out", hook=_describe(hook), grace=HOOK_GRACE_SECONDS
                )


class SimpleExecution(Execution[T]):
    """An execution of ``async def fn(session) -> value``."""

    __slots__ = ()

    def __init__(
        self, runtime: Runtime, fn: Callable[[Session], Awaitable[T]], **kwargs: Any
    ) -> None:
        _check_workflow("fn", fn, generator=False)
        super().__init__(runtime, fn, **kwargs)

    async def _scoped(self, session: Session) -> Any:
        with trio.CancelScope() as scope:
            if self._begin(scope):
                return await self._call(session)
        return None

    async def _call(self, session: Session) -> Any:
        awaitable = self._workflow(session)
        if not inspect.isawaitable(awaitable):
            raise InvalidArgumentError(
                "fn",
                f"returned {type_name(awaitable)}, not an awaitable: pass an `async def` function",
            )
        return await awaitable


class StreamingExecution(Execution[T]):
    """An execution of an async generator ``gen(session)`` that yields events."""

    _streaming = True
    __slots__ = ()

    def __init__(
        self, runtime: Runtime, gen: Callable[[Session], AsyncIterator[Event]], **kwargs: Any
    ) -> None:
        _check_workflow("gen", gen, generator=True)
        super().__init__(runtime, gen, **kwargs)

    def stream(self) -> EventStream:
        """Iterate every event from the first, then live ones, until the execution ends.

        Several consumers may iterate at once; each iterator ends when the execution ends,
        however it ends. The execution must have been started (``async with``, or
        ``result()`` in another task).
        """
        if not self._claimed:
            raise ExecutionClosedError(
                "stream() before the execution started: use `async with "
                "provider.streaming_execution(gen) as execution:` and iterate inside the block"
            )
        return self._state.log.stream()

    async def _scoped(self, session: Session) -> Any:
        # The user's generator runs in a driver task of its own, so that it may yield from
        # inside its own nurseries and cancel scopes without crossing ours. The driver's
        # nursery is the execution's scope: one cancel scope less per execution.
        try:
            async with trio.open_nursery() as nursery:
                if self._begin(nursery.cancel_scope):
                    agen = self._workflow(session)
                    if not hasattr(agen, "__anext__"):
                        self._cancellation.failed()
                        raise InvalidArgumentError(
                            "gen",
                            f"returned {type_name(agen)}, not an async generator: "
                            "its body must `yield`",
                        )
                    nursery.start_soon(self._drive, agen)
        except BaseExceptionGroup as group:
            # The group is an artifact of the driver nursery: surface a lone error as itself.
            raise_collapsed(group)
        return None

    async def _drive(self, agen: Any) -> None:
        state = self._state
        try:
            while True:
                try:
                    item = await agen.__anext__()
                except StopAsyncIteration:
                    return
                if state.is_decided():
                    return  # whatever comes after the terminal event is not delivered
                if not isinstance(item, Event):
                    raise TypeError(_bad_yield(item))
                state.deliver(item)
                if state.is_decided():
                    return
                await state.log.wait_for_room()
        except BaseException as exc:
            if not is_cancellation(exc):
                # Recorded before the driver nursery cancels itself over it: not a cancel.
                self._cancellation.failed()
            raise
        finally:
            await agen.aclose()


# A random per-process prefix and a counter: unique across processes without a syscall each.
# The counter is spread over its 64 bits by an odd multiplier (a bijection modulo 2**64), so
# that ids do not end in a run of zeros and still never repeat within a process.
_ID_PREFIX: Final = uuid.uuid4().hex[:16]
_id_counter = itertools.count(1)
_SPREAD: Final = 0x9E3779B97F4A7C15
_MASK: Final = (1 << 64) - 1


def _new_execution_id() -> str:
    return f"{_ID_PREFIX}{(next(_id_counter) * _SPREAD) & _MASK:016x}"


def _signals(signal: object) -> tuple[CancelSignal, ...]:
    if signal is None:
        return ()
    if isinstance(signal, CancelSignal):
        return (signal,)
    if isinstance(signal, Sequence) and not isinstance(signal, str):
        return check_items("signal", signal, CancelSignal, "an agtl.CancelSignal", allow_empty=True)
    raise InvalidArgumentError(
        "signal", f"must be a CancelSignal or a list of them, not {type_name(signal)}"
    )


_FLAG: Final = {False: inspect.CO_COROUTINE, True: inspect.CO_ASYNC_GENERATOR}


def _check_workflow(name: str, fn: object, *, generator: bool) -> None:
    if type(fn) is FunctionType and fn.__code__.co_flags & _FLAG[generator]:
        return  # the common case: a plain `async def`, decided from its code flags
    if inspect.isasyncgenfunction(fn) if generator else inspect.iscoroutinefunction(fn):
        return
    if not callable(fn):
        raise InvalidArgumentError(name, f"must be callable, not {type_name(fn)}")
    target = inspect.unwrap(getattr(fn, "func", fn))
    if generator and inspect.iscoroutinefunction(target):
        raise InvalidArgumentError(
            name,
            "is an `async def` coroutine function: use provider.simple_execution(fn), "
            "or make it an async generator that yields events",
        )
    if not generator and inspect.isasyncgenfunction(target):
        raise InvalidArgumentError(
            name, "is an async generator function: use provider.streaming_execution(gen)"
        )
    plain_def = inspect.isfunction(target) and target.__name__ != "<lambda>"
    if plain_def and not (
        inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)
    ):
        wanted = (
            "an async generator (`async def gen(session): yield ...`)"
            if generator
            else ("an `async def fn(session)` function")
        )
        raise InvalidArgumentError(name, f"{target.__name__!r} is a plain function; pass {wanted}")


def _bad_yield(item: object) -> str:
    if inspect.iscoroutine(item):
        item.close()
        return (
            "the workflow yielded a coroutine: did you forget `await` "
            "(`yield await session.done(value)`)?"
        )
    return f"a streaming workflow must yield events (session.emit/done/fail), not {type_name(item)}"


def _must_propagate(exc: BaseException) -> bool:
    """Cancellation from a scope we do not own and interpreter exits keep propagating."""
    if is_cancellation(exc) or contains_cancelled(exc):
        return True
    return any(isinstance(leaf, KeyboardInterrupt | SystemExit) for leaf in leaves(exc))


def _caused_by(error: BaseException | None, candidate: BaseException) -> bool:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if error is candidate:
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _describe(hook: object) -> str:
    return getattr(hook, "__qualname__", None) or repr(hook)
