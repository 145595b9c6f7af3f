"""Submitting executions to Temporal and getting their agtl Results back (asyncio)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import jsonschema
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, TerminatedError, WorkflowAlreadyStartedError
from temporalio.exceptions import CancelledError as TemporalCancelledError
from temporalio.service import RPCError, RPCStatusCode

from agtl._jsonable import to_json
from agtl._vocabulary import CancelInfo, CancelSource, Status
from agtl.errors import AgtlError, InvalidArgumentError, RemoteError
from agtl.result import Result
from agtl.summary import Summary
from agtl.temporal._activity import load_workflow, with_why
from agtl.temporal._connection import TemporalUnavailableError
from agtl.temporal._spec import ProviderSpec
from agtl.temporal._workflow import BAD_DECISION, WORKFLOW_NAME
from agtl.validation import (
    check_count,
    check_optional_seconds,
    check_seconds,
    check_str,
    type_name,
)

__all__ = [
    "DEFAULT_TASK_QUEUE",
    "ExecutionHandle",
    "ExecutionNotFoundError",
    "PendingRequest",
    "Progress",
    "gather",
    "get_handle",
    "submit",
]

DEFAULT_TASK_QUEUE = "agtl"
#: How many Results :func:`gather` asks Temporal for at once.
_GATHER_BATCH = 32


class ExecutionNotFoundError(AgtlError, LookupError):
    """No execution with this id in the client's Temporal namespace."""


@contextlib.contextmanager
def _known(handle: ExecutionHandle) -> Iterator[None]:
    """Turn Temporal's "not found" for ``handle`` into an error that names the id and what
    to check."""
    try:
        yield
    except RPCError as error:
        if error.status is not RPCStatusCode.NOT_FOUND:
            raise
        raise ExecutionNotFoundError(
            f"no execution {handle.id!r} on Temporal (namespace "
            f"{handle.client.namespace!r}): check the id (ExecutionHandle.id) and that the "
            "client connects to the namespace it was submitted to"
        ) from None


@attrs.frozen
class Progress:
    """How far a running execution is, from its activity's last heartbeat."""

    #: Temporal's attempt number (2 and up after a lost worker).
    attempt: int
    #: LLM calls finished (replayed ones included) and their output tokens.
    calls: int
    output_tokens: int
    #: Calls answered from the earlier attempt's journal.
    replayed: int
    #: Characters the live calls of this attempt have produced so far.
    streamed_chars: int


@attrs.frozen
class PendingRequest:
    """A request an execution on Temporal waits on a person for.

    ``kind`` is ``"approval"`` (``tool`` and ``arguments`` of the call, ``id`` its call id)
    or ``"input"`` (``prompt`` and the answer's JSON ``schema``); ``timeout`` the seconds it
    may wait; ``refused`` why the last answer given did not fit, if it did not.
    """

    kind: str
    id: str
    tool: str | None = None
    arguments: Mapping[str, Any] | None = None
    prompt: str | None = None
    schema: Mapping[str, Any] | None = None
    timeout: float | None = None
    refused: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PendingRequest:
        fields = {a.name for a in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


def _check_answer(schema: Mapping[str, Any], value: Any) -> None:
    """Refuse an answer that does not fit its question's JSON schema."""
    problems = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(value), key=lambda e: list(e.path)
    )
    if problems:
        where = "/".join(str(p) for p in problems[0].path)
        at = f" at {where}" if where else ""
        raise InvalidArgumentError("value", f"does not fit the request{at}: {problems[0].message}")


@attrs.frozen
class ExecutionHandle:
    """An execution submitted to Temporal: wait for its Result, cancel it, ask its progress,
    decide what it waits on a person for."""

    workflow: WorkflowHandle[Any, Any]
    client: Client = attrs.field(repr=False)

    @property
    def id(self) -> str:
        """The Temporal workflow id (give it to :func:`get_handle` anywhere)."""
        return self.workflow.id

    async def result(self, *, value_type: Any = None) -> Result[Any]:
        """The agtl Result: ``succeeded``, ``canceled`` or ``failed``, never a Temporal error
        for how the execution ended. Raises :class:`ExecutionNotFoundError` for an id Temporal
        does not know, and otherwise only when Temporal itself cannot be asked.

        The value crossed Temporal in its JSON form; ``value_type`` (a pydantic model, a
        dataclass, ...) validates it back into that type, as ``Result.from_dict`` does."""
        try:
            with _known(self):
                outcome = await self.workflow.result()
        except WorkflowFailureError as error:
            return _unfinished_result(self.id, _describe_failure(error))
        return result_of(self.id, outcome, value_type=value_type)

    async def cancel(
        self,
        reason: str | None = None,
        *,
        mode: str = "hard",
        after: str = "call",
        grace: float | None = None,
    ) -> None:
        """Cancel through Temporal; the execution ends ``canceled`` with ``reason``. With
        ``mode="soft"`` the running model call (``after="call"``) or step (``"step"``)
        finishes first, as ``execution.stop`` does; ``grace`` bounds the wait."""
        if mode not in ("hard", "soft"):
            raise InvalidArgumentError("mode", f"must be 'hard' or 'soft', not {mode!r}")
        if mode == "soft":
            if after not in ("call", "step"):
                raise InvalidArgumentError("after", f"must be 'call' or 'step', not {after!r}")
            seconds = check_optional_seconds("grace", grace)
            wait = "none" if seconds is None else f"{seconds:g}"
            reason = f"agtl soft stop (after={after}, grace={wait}): {reason or 'stopped'}"
        with _known(self):
            await self.workflow.cancel(reason=reason or "")

    async def pending(self) -> tuple[PendingRequest, ...]:
        """The requests the execution waits on a person for now (none while an attempt runs:
        a request is listed once its attempt has ended to wait for it)."""
        with _known(self):
            listed = await self.workflow.query("pending")
        return tuple(PendingRequest.from_dict(r) for r in listed)

    async def approve(
        self, call_id: str, *, by: str | None = None, reason: str | None = None
    ) -> None:
        """Let the waiting tool call ``call_id`` run; the execution goes on in a new attempt.
        An id that is not an open approval request raises :class:`InvalidArgumentError`."""
        await self._decide("approve", {"call_id": call_id, "by": by, "reason": reason})

    async def deny(self, call_id: str, reason: str | None = None, *, by: str | None = None) -> None:
        """Refuse the waiting tool call ``call_id``: it never runs, the model is told
        ``reason``. Like :meth:`approve` for a wrong id."""
        await self._decide("deny", {"call_id": call_id, "by": by, "reason": reason})

    async def provide_input(self, request_id: str, value: Any) -> None:
        """Answer the workflow's open question ``request_id``. A value that does not fit the
        question's JSON schema, or a wrong id, raises :class:`InvalidArgumentError`."""
        check_str("request_id", request_id)
        value = _json("value", value)
        for request in await self.pending():
            if request.id == request_id and request.schema is not None:
                _check_answer(request.schema, value)
        await self._decide("provide_input", {"request_id": request_id, "value": value})

    async def _decide(self, update: str, decision: dict[str, Any]) -> None:
        key = "call_id" if "call_id" in decision else "request_id"
        check_str(key, decision[key])
        for name in ("by", "reason"):
            if decision.get(name) is not None:
                check_str(name, decision[name])
        try:
            with _known(self):
                try:
                    await self.workflow.execute_update(update, decision)
                except RPCError as error:
                    if "completed" not in error.message:
                        raise
                    raise InvalidArgumentError(
                        key,
                        f"{decision[key]!r}: the execution has ended, nothing waits for a decision",
                    ) from None
        except WorkflowUpdateFailedError as error:
            cause = error.cause
            if isinstance(cause, ApplicationError) and cause.type == BAD_DECISION:
                raise InvalidArgumentError(key, cause.message) from None
            raise

    async def progress(self) -> Progress | None:
        """The running attempt's last heartbeat (``None`` before the first one)."""
        with _known(self):
            description = await self.workflow.describe()
        pending = description.raw_description.pending_activities
        if not pending or not pending[0].heartbeat_details.payloads:
            return None
        details = await self.client.data_converter.decode(pending[0].heartbeat_details.payloads)
        beat = details[0] if details else None
        if not isinstance(beat, Mapping):
            return None
        return Progress(
            attempt=int(beat.get("attempt", 0)),
            calls=int(beat.get("calls", 0)),
            output_tokens=int(beat.get("output_tokens", 0)),
            replayed=int(beat.get("replayed", 0)),
            streamed_chars=int(beat.get("streamed_chars", 0)),
        )


async def gather(
    client: Client, *, query: str | None = None, limit: int | None = None
) -> list[Result[Any]]:
    """The Results of the finished agtl executions in the client's namespace, newest first.

    ``query`` narrows the list with Temporal's list filter (for example
    ``"StartTime > '2026-11-01T00:00:00Z'"``). Write them with
    :class:`agtl.reporting.JsonlSink` for ``agtl report``, or use ``agtl report --temporal``.
    """
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise InvalidArgumentError("limit", f"must be an int >= 1, not {limit!r}")
    finished = f"WorkflowType = '{WORKFLOW_NAME}' AND ExecutionStatus != 'Running'"
    if query is not None:
        finished = f"{finished} AND ({check_str('query', query)})"
    results: list[Result[Any]] = []
    batch: list[ExecutionHandle] = []

    async def read_batch() -> None:
        # One round trip per execution: a batch at a time keeps many of them in flight.
        results.extend(await asyncio.gather(*(handle.result() for handle in batch)))
        batch.clear()

    async for execution in client.list_workflows(finished, limit=limit):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        batch.append(ExecutionHandle(handle, client))
        if len(batch) == _GATHER_BATCH:
            await read_batch()
    await read_batch()
    return results


def get_handle(client: Client, execution_id: str) -> ExecutionHandle:
    """The handle of an execution submitted earlier (by this process or any other)."""
    handle = client.get_workflow_handle(check_str("execution_id", execution_id))
    return ExecutionHandle(handle, client)


async def submit(
    client: Client,
    workflow: str,
    input: Any = None,
    *,
    provider: ProviderSpec,
    timeout: float | None = None,  # noqa: ASYNC109 - the execution's, not this call's
    task_queue: str = DEFAULT_TASK_QUEUE,
    id: str | None = None,
    heartbeat_timeout: float = 5.0,
    max_attempts: int = 3,
    check: bool = True,
) -> ExecutionHandle:
    """Start ``workflow`` ("package.module:function") on a worker with ``input`` (JSON).

    ``provider`` says which provider the worker builds; ``timeout`` bounds the execution
    (agtl ends it, so its summary survives). ``heartbeat_timeout`` is how soon a lost worker
    is noticed and the execution retried elsewhere, up to ``max_attempts`` attempts. With
    ``check`` the workflow is imported here first, so a wrong path fails at the call; pass
    ``check=False`` where only the workers have the code.

    ``id`` (default: a new random one) names the execution. Submitting the same work with an
    id already used returns the handle of the execution there, running or finished, and
    starts nothing, so a client that retries its submit never runs the work twice. The same
    id with other work raises :class:`~agtl.InvalidArgumentError`.
    """
    if not isinstance(client, Client):
        raise InvalidArgumentError(
            "client", f"must be a temporalio Client, not {type_name(client)}"
        )
    if not isinstance(provider, ProviderSpec):
        raise InvalidArgumentError(
            "provider",
            f"must be an agtl.temporal.ProviderSpec (e.g. ProviderSpec.local()), "
            f"not {type_name(provider)}",
        )
    check_str("workflow", workflow)
    if check:
        load_workflow(workflow)  # as a worker will: a wrong path fails here
    # The same checks as the core's (a bool is not a number of seconds, nor a count).
    timeout = check_optional_seconds("timeout", timeout)
    if check_seconds("heartbeat_timeout", heartbeat_timeout) <= 0:
        raise InvalidArgumentError(
            "heartbeat_timeout", f"must be more than 0 seconds, got {heartbeat_timeout!r}"
        )
    max_attempts = check_count("max_attempts", max_attempts, minimum=1)
    request = {
        "workflow": workflow,
        "input": _json("input", input),
        "provider": provider.to_dict(),
        "timeout": None if timeout is None else float(timeout),
        "heartbeat_timeout": float(heartbeat_timeout),
        "max_attempts": max_attempts,
    }
    execution_id = f"agtl-{uuid.uuid4().hex}" if id is None else check_str("id", id)
    try:
        handle = await client.start_workflow(
            WORKFLOW_NAME,
            request,
            id=execution_id,
            task_queue=check_str("task_queue", task_queue),
            static_summary=f"agtl: {workflow}",  # what Temporal's UI and CLI show for it
            # An id names one execution: a second submit gets the one already there, running
            # (USE_EXISTING) or finished (REJECT_DUPLICATE, then its handle below).
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        handle = client.get_workflow_handle(execution_id)
    except RPCError as error:
        raise TemporalUnavailableError(f"Temporal refused the execution: {error}") from None
    if id is not None:
        await _check_same_request(client, handle, request)
    return ExecutionHandle(handle, client)


async def _check_same_request(
    client: Client, handle: WorkflowHandle[Any, Any], request: Mapping[str, Any]
) -> None:
    """That the execution ``handle`` names was submitted with ``request``: a reused id with
    other work must not quietly hand back somebody else's execution."""
    try:
        first = await anext(aiter(handle.fetch_history_events()), None)
    except RPCError as error:
        raise TemporalUnavailableError(
            f"cannot read execution {handle.id!r} from Temporal: {error}"
        ) from None
    started = None if first is None else first.workflow_execution_started_event_attributes
    if started is not None and started.workflow_type.name == WORKFLOW_NAME:
        try:
            earlier = await client.data_converter.decode(started.input.payloads)
        except Exception:  # not what submit writes
            earlier = None
        if earlier == [request]:
            return
    raise InvalidArgumentError(
        "id",
        f"{handle.id!r} already names another execution (other workflow, input or options); "
        "an id names one execution: pick a new one to run this",
    )


def _json(name: str, value: Any) -> Any:
    try:
        return json.loads(json.dumps(to_json(value, name), allow_nan=False))
    except (TypeError, ValueError) as error:
        raise InvalidArgumentError(
            name, f"must be JSON data (dict, list, str, number, bool, None): {error}"
        ) from None


def result_of(
    execution_id: str, outcome: Mapping[str, Any], *, value_type: Any = None
) -> Result[Any]:
    """The Result the ready workflow returned, rebuilt from its data."""
    if "result" in outcome:
        return Result.from_dict(outcome["result"], value_type=value_type)
    return _unfinished_result(execution_id, outcome.get("unfinished") or {})


def _describe_failure(error: WorkflowFailureError) -> dict[str, Any]:
    cause = error.cause
    if isinstance(cause, TemporalCancelledError):
        return {
            "status": "canceled",
            "source": "signal",
            "reason": "the Temporal workflow was cancelled",
        }
    if isinstance(cause, TerminatedError):
        # An operator's hard stop: nothing failed, the execution was stopped from outside
        # (its Result and summary are lost with the workflow; the worker's records keep them).
        return {
            "status": "canceled",
            "source": "signal",
            "reason": with_why("the Temporal workflow was terminated", cause.message, ""),
        }
    return {
        "status": "failed",
        "type": type(cause or error).__name__,
        "message": str(cause or error),
    }


def _unfinished_result(execution_id: str, why: Mapping[str, Any]) -> Result[Any]:
    """A Result for an execution no worker ran to its end: nothing was spent that is known."""
    summary = Summary(
        execution_id=execution_id,
        started_at=dt.datetime.now(dt.UTC),
        duration=0.0,
        metadata={"temporal_workflow_id": execution_id},
    )
    if why.get("status") == "canceled":
        return Result(
            execution_id=execution_id,
            status=Status.CANCELED,
            summary=summary,
            cancel=CancelInfo(CancelSource(why.get("source", "signal")), why.get("reason"), 0.0),
        )
    return Result(
        execution_id=execution_id,
        status=Status.FAILED,
        summary=summary,
        error=RemoteError(str(why.get("type", "Error")), str(why.get("message", ""))),
    )
