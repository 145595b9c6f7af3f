"""The activity that runs one agtl execution on a worker, on the worker's trio guest run.

Temporal calls :meth:`Executions.execute` on the worker's asyncio loop. It builds (once per
spec) the provider, replays the calls an earlier attempt recorded, runs the execution through
:func:`agtl.aio.result` and returns the Result as data. While it runs, a heartbeat carries the
call journal and the progress; a cancel of the workflow reaches it as asyncio's cancellation
at a heartbeat and becomes a fired :class:`~agtl.CancelSignal` with Temporal's reason, so the
execution ends ``canceled`` with its partial and summary, and the Result is still returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from temporalio import activity
from temporalio.exceptions import ApplicationError

from agtl import _entry as entry
from agtl import aio
from agtl._logging import default_logger
from agtl._vocabulary import CancelSource, SummarySink
from agtl.errors import AgtlError, UnserializableValueError
from agtl.journal import CallJournal, Decision, Entry, JournalEntry, entry_from_dict
from agtl.provider import Provider
from agtl.result import Result
from agtl.session import Session
from agtl.signals import CancelSignal
from agtl.temporal._spec import ProviderSpec
from agtl.temporal._workflow import ACTIVITY_NAME, BAD_REQUEST

__all__ = ["Executions", "load_workflow", "with_why"]


#: The most journal (bytes of JSON) a heartbeat carries; Temporal warns about payloads
#: past 512 KiB and refuses them past 2 MiB by default.
JOURNAL_BUDGET = 256 * 1024
#: The cancel reason of an attempt that ends to wait for a person (never an execution's).
SUSPENDED = "waiting for a person's decision: the execution goes on in a later attempt"
#: The cancel reason of an execution whose timeout passed while it waited for a person.
STOPPED_BY_TIMEOUT = "the execution's timeout passed while it waited for a person's decision"
#: How ``handle.cancel(mode="soft")`` words its Temporal cancel reason (the one channel a
#: cancel has to a running activity), and how the activity reads it back.
SOFT_STOP = re.compile(
    r"agtl soft stop \(after=(?P<after>call|step), grace=(?P<grace>[0-9.]+|none)\): "
    r"(?P<why>.*?)(?: \(by [^)]*\))?$"
)
#: How long the last attempt of an execution stopped while waiting may take to replay.
STOP_GRACE = 30.0
#: How long the activity waits for Temporal's history to learn why it was cancelled.
_REASON_LOOKUP_SECONDS = 1.0


def load_workflow(path: str) -> Callable[..., Any]:
    """The agtl workflow function ``"package.module:function"`` names, checked."""
    return entry.load(path, files=False)


class Executions:
    """The worker's activity, with what it shares across executions: providers and a registry
    of the running ones (so that a worker's shutdown can cancel them with a reason).

    :func:`agtl.temporal.serve` makes one; to add agtl to a worker of your own, register
    ``Executions(...).execute`` and :class:`~agtl.temporal.ExecutionWorkflow`, with agtl
    passed through Temporal's sandbox (``with_passthrough_modules("agtl")``: the sandbox
    cannot import trio a second time) or the unsandboxed runner ``serve`` uses.
    """

    def __init__(
        self,
        *,
        summary_sink: SummarySink | None = None,
        heartbeat_every: float = 0.5,
        identity: str | None = None,
    ) -> None:
        self._heartbeat_every = heartbeat_every
        self._identity = identity
        self._providers: dict[str, Provider] = {}
        self._building: dict[str, asyncio.Lock] = {}
        self._running: set[CancelSignal] = set()
        self._idle = asyncio.Event()  # set while nothing runs
        self._idle.set()
        self._summary_sink = summary_sink
        self._closing_reason: str | None = None

    @property
    def running(self) -> int:
        return len(self._running)

    async def drain(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the running executions to end; whether they all did."""
        try:
            async with asyncio.timeout(seconds):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    def cancel_all(self, reason: str) -> None:
        """Cancel every running execution (and any that starts from now on) with ``reason``."""
        self._closing_reason = reason
        for signal in list(self._running):
            signal.cancel(reason)

    async def aclose(self) -> None:
        """Close the providers this worker built."""
        for provider in self._providers.values():
            with contextlib.suppress(Exception):
                await aio.call(provider.aclose)
        self._providers.clear()

    async def _provider(self, spec: ProviderSpec) -> Provider:
        key = spec.key()
        lock = self._building.setdefault(key, asyncio.Lock())
        async with lock:
            provider = self._providers.get(key)
            if provider is None:
                # Loading a local model takes seconds: off the loop, so heartbeats go on.
                provider = await asyncio.to_thread(spec.build)
                if self._summary_sink is not None:
                    provider = provider.with_summary_sink(self._summary_sink)
                self._providers[key] = provider
        return provider

    @activity.defn(name=ACTIVITY_NAME)
    async def execute(self, request: dict[str, Any]) -> dict[str, Any]:
        info = activity.info()
        try:
            spec = ProviderSpec.from_dict(request["provider"])
            fn = load_workflow(request["workflow"])
        except AgtlError as error:
            raise ApplicationError(str(error), type=BAD_REQUEST, non_retryable=True) from None
        try:
            provider = await self._provider(spec)
        except Exception as error:  # no attempt on this worker can do better
            raise ApplicationError(
                f"cannot build the provider ({spec.describe()}): {type(error).__name__}: {error}",
                type=BAD_REQUEST,
                non_retryable=True,
            ) from None
        beat = _Heartbeat(info.attempt, interval=self._heartbeat_every)
        signal = CancelSignal()
        waits = _Waits(signal, request.get("stop"))
        # Keyed by the workflow id: tool calls' idempotency keys are the same in every attempt.
        journal = CallJournal(
            _earlier_journal(info.heartbeat_details, request),
            on_record=beat.recorded,
            key=info.workflow_id,
            decisions=[Decision.from_dict(d) for d in request.get("decisions") or ()],
            on_wait=waits.opened,
        )
        deadline = request.get("deadline")
        timeout = None if deadline is None else max(0.0, deadline - time.time())
        if waits.stop is not None:  # replay up to the open request, then end there
            timeout = STOP_GRACE
            if waits.stop.get("source") == "signal":
                waits.stop_reason = await _why_cancelled(info)
        workflow = _bind(fn, request.get("input"), info, self._identity)
        journaled = provider.with_journal(journal)
        execution: Any
        if entry.is_streaming(fn):
            execution = journaled.streaming_execution(workflow, signal=signal, timeout=timeout)
        else:
            execution = journaled.simple_execution(workflow, signal=signal, timeout=timeout)
        beat.journal = journal
        self._running.add(signal)
        self._idle.clear()
        if self._closing_reason is not None:
            signal.cancel(self._closing_reason)
        running = asyncio.ensure_future(aio.result(execution))
        beating = asyncio.ensure_future(beat.run())
        try:
            try:
                result: Result[Any] = await asyncio.shield(running)
            except asyncio.CancelledError:
                reason = "the Temporal workflow was cancelled"
                try:
                    reason = await _why_cancelled(info)
                finally:  # also if a second cancel cuts the lookup short
                    soft = SOFT_STOP.search(reason)
                    if soft is None:
                        signal.cancel(reason)
                    else:  # handle.cancel(mode="soft"): the running call or step finishes
                        grace = None if soft["grace"] == "none" else float(soft["grace"])
                        execution.stop(after=soft["after"], grace=grace, reason=soft["why"])
                result = await running
        finally:
            self._running.discard(signal)
            if not self._running:
                self._idle.set()
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
        default_logger().debug(
            "temporal.execution_finished",
            workflow_id=info.workflow_id,
            attempt=info.attempt,
            status=result.status.value,
            replayed=journal.replayed,
        )
        if waits.suspended(result):
            details = beat.details()
            return {
                "waiting": {
                    "journal": details["journal"],
                    "journal_complete": details["journal_complete"],
                    "requests": waits.requests,
                },
                "attempt": info.attempt,
            }
        result = waits.stopped(result)
        try:
            record = result.to_dict()
        except UnserializableValueError as error:
            # Running it again would only pay for the same value again.
            raise ApplicationError(
                str(error), type="UnserializableValueError", non_retryable=True
            ) from None
        return {"result": record, "attempt": info.attempt, "replayed": journal.replayed}


def _earlier_journal(details: Any, request: Mapping[str, Any]) -> list[Entry]:
    """The calls the previous attempt recorded: in its last heartbeat if this activity was
    retried, else in what the workflow passed on from an attempt that ended to wait."""
    last = details[0] if details else None
    entries = last.get("journal") if isinstance(last, Mapping) else None
    if entries is None:
        entries = request.get("journal")
    return [entry_from_dict(entry) for entry in entries or ()]


class _Waits:
    """The requests of an attempt that wait for a person, and what they do to it: by
    default the attempt ends (the workflow waits for the decisions, holding no worker); in
    the last attempt of an execution cancelled or timed out while waiting (``stop``), the
    execution ends there, canceled."""

    def __init__(self, signal: CancelSignal, stop: Mapping[str, Any] | None) -> None:
        self.signal = signal
        self.stop = stop
        self.stop_reason: str | None = None
        self.requests: list[dict[str, Any]] = []
        self._loop = asyncio.get_running_loop()

    def opened(self, request: Mapping[str, Any]) -> None:
        # On the trio guest run. Ending the attempt goes through the loop, so the requests
        # that open in the same moment (a step's parallel tool calls) end up in it too.
        self.requests.append(dict(request))
        self._loop.call_soon_threadsafe(self._end)

    def _end(self) -> None:
        if self.stop is None:
            self.signal.cancel(SUSPENDED)
        elif self.stop.get("source") == "timeout":
            self.signal.cancel(STOPPED_BY_TIMEOUT)
        else:
            self.signal.cancel(self.stop_reason or "the Temporal workflow was cancelled")

    def suspended(self, result: Result[Any]) -> bool:
        """Whether the attempt ended to wait (its Result is not the execution's)."""
        return (
            self.stop is None
            and bool(self.requests)
            and result.cancel is not None
            and result.cancel.reason == SUSPENDED
        )

    def stopped(self, result: Result[Any]) -> Result[Any]:
        """The Result, with the timeout as its cause when the timeout stopped it."""
        if result.cancel is not None and result.cancel.reason == STOPPED_BY_TIMEOUT:
            cancel = attrs.evolve(result.cancel, source=CancelSource.TIMEOUT)
            return attrs.evolve(result, cancel=cancel)
        return result


def _bind(
    fn: Callable[..., Any], value: Any, info: activity.Info, worker: str | None
) -> Callable[[Session], Any]:
    """The workflow as an execution runs it: with its input, and Temporal's ids recorded."""

    def label(session: Session) -> None:
        session.set_metadata(
            temporal_workflow_id=info.workflow_id,
            temporal_run_id=info.workflow_run_id,
            temporal_attempt=info.attempt,
            temporal_worker=worker,
        )

    return entry.bind(fn, value, before=label)


async def _why_cancelled(info: activity.Info) -> str:
    """Temporal's reason for the cancel, as the agtl cancel reason (bounded: one lookup)."""
    details = activity.cancellation_details()
    if details is not None and details.timed_out:
        return "Temporal timed the activity out"
    if details is not None and details.worker_shutdown:
        return "the Temporal worker is shutting down"
    if details is not None and details.paused:
        return "the activity was paused in Temporal"
    if details is not None and details.reset:
        return "the workflow was reset in Temporal"
    reason = "the Temporal workflow was cancelled"
    with contextlib.suppress(Exception):
        async with asyncio.timeout(_REASON_LOOKUP_SECONDS):
            handle = activity.client().get_workflow_handle(
                info.workflow_id or "", run_id=info.workflow_run_id
            )
            async for event in handle.fetch_history_events():
                if event.HasField("workflow_execution_cancel_requested_event_attributes"):
                    cancelled = event.workflow_execution_cancel_requested_event_attributes
                    return with_why(reason, cancelled.cause, cancelled.identity)
                if event.HasField("workflow_execution_terminated_event_attributes"):
                    terminated = event.workflow_execution_terminated_event_attributes
                    return with_why(
                        "the Temporal workflow was terminated",
                        terminated.reason,
                        terminated.identity,
                    )
    return reason


def with_why(what: str, why: str, who: str) -> str:
    """``what`` happened, with the reason and the identity the history gives (either may be
    empty): "the Temporal workflow was cancelled: the user pressed Stop (by 4242@host)"."""
    text = f"{what}: {why}" if why else what
    return f"{text} (by {who})" if who else text


class _Heartbeat:
    """Sends the journal and the progress: at once after each finished call, and regularly.

    The journal goes out as its longest prefix that fits in ``journal_budget`` bytes of JSON
    (Temporal refuses large payloads): a later attempt replays that prefix and makes the
    rest of the calls again. Entries are converted once and kept.
    """

    def __init__(
        self, attempt: int, *, interval: float, journal_budget: int = JOURNAL_BUDGET
    ) -> None:
        self.attempt = attempt
        self.interval = interval
        self.journal: CallJournal | None = None
        self.journal_budget = journal_budget
        self._kept: list[dict[str, Any]] = []
        self._kept_bytes = 0
        self._full = False
        self._loop = asyncio.get_running_loop()
        self._context = contextvars.copy_context()  # the activity's, for activity.heartbeat

    def details(self) -> dict[str, Any]:
        entries = () if self.journal is None else self.journal.entries
        for recorded in entries[len(self._kept) :]:
            if self._full:
                break
            data = recorded.to_dict()
            size = len(json.dumps(data, ensure_ascii=False).encode())
            if self._kept_bytes + size > self.journal_budget:
                self._full = True
                break
            self._kept.append(data)
            self._kept_bytes += size
        calls = [e for e in entries if isinstance(e, JournalEntry)]
        output = sum(e.usage.output_tokens or 0 for e in calls)
        return {
            "attempt": self.attempt,
            "calls": len(calls),
            "tool_calls": len(entries) - len(calls),
            "output_tokens": output,
            "replayed": 0 if self.journal is None else self.journal.replayed,
            "streamed_chars": 0 if self.journal is None else self.journal.streamed_chars,
            "journal": list(self._kept),
            "journal_complete": not self._full,
        }

    def send(self) -> None:
        with contextlib.suppress(Exception):  # a heartbeat after the activity ended
            activity.heartbeat(self.details())

    def recorded(self, _entry: Entry | Decision) -> None:
        # Called on the trio guest run (the loop's thread); the heartbeat goes out from asyncio.
        self._loop.call_soon_threadsafe(self.send, context=self._context)

    async def run(self) -> None:
        while True:
            self.send()
            await asyncio.sleep(self.interval)
