"""The ready Temporal workflow: run one agtl execution as one activity and return its Result.

This module is loaded again inside Temporal's workflow sandbox, so it imports only the SDK
and the standard library; the activity is named, not imported. The workflow's return value
is data: ``{"result": Result.to_dict()}`` when the activity ran the execution, or
``{"unfinished": {...}}`` when no attempt could (no worker in time, retries used up, a bad
request). A cancel of the workflow is passed on to the activity, which ends the execution
as ``canceled`` and returns its Result; the workflow waits for it.

When the execution waits for a person (an approval, an answer), the activity ends the attempt
with ``{"waiting": {...}}``: its journal and the open requests. The workflow then waits,
holding no worker, for the ``approve``, ``deny`` and ``provide_input`` updates (query
``pending`` lists what is open), and starts the next attempt with the journal and the
decisions, which replays what was done and goes on. A request's own timeout decides it as
timed out; the execution's timeout, or a cancel, while waiting runs one last attempt that
replays the journal and ends the execution ``canceled`` at the open request, with its summary.
"""

from __future__ import annotations

import asyncio
import builtins
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

__all__ = ["ACTIVITY_NAME", "BAD_DECISION", "BAD_REQUEST", "WORKFLOW_NAME", "ExecutionWorkflow"]

WORKFLOW_NAME = "agtl.Execution"
ACTIVITY_NAME = "agtl.execute"
#: The error type of a request no attempt can fix (unknown workflow, bad provider spec).
BAD_REQUEST = "AgtlBadRequest"
#: The error type of a decision for no open request (refused before it reaches history).
BAD_DECISION = "AgtlBadDecision"
#: The field of a decision that names its request, by kind.
_KEYS = {"approval": "call_id", "input": "request_id"}
#: Without a timeout, how long one attempt may run before Temporal gives up on it.
NO_TIMEOUT_ATTEMPT = timedelta(hours=24)
#: Past the agtl deadline, how long Temporal waits for agtl to end the execution itself.
DEADLINE_GRACE = timedelta(seconds=30)


@workflow.defn(name=WORKFLOW_NAME)
class ExecutionWorkflow:
    """Runs the ``agtl.execute`` activity (with retries after a worker is lost); between
    attempts, waits durably for a person's decisions, holding no worker slot."""

    def __init__(self) -> None:
        self._open: dict[str, dict[str, Any]] = {}  # requests waiting, by id
        self._decided: dict[str, dict[str, Any]] = {}  # decisions by request id
        self._since = 0.0  # workflow time the open requests began to wait
        self._running = False  # whether an attempt (an activity) runs now

    @workflow.query(name="pending")
    def pending(self) -> list[dict[str, Any]]:
        """The requests waiting for a person now, oldest first."""
        return list(self._open.values())

    @workflow.update(name="approve")
    async def approve(self, decision: dict[str, Any]) -> None:
        await self._settle("approval", decision, approved=True)

    @approve.validator
    def _check_approve(self, decision: dict[str, Any]) -> None:
        self._check("approval", decision, final=False)

    @workflow.update(name="deny")
    async def deny(self, decision: dict[str, Any]) -> None:
        await self._settle("approval", decision, approved=False)

    @deny.validator
    def _check_deny(self, decision: dict[str, Any]) -> None:
        self._check("approval", decision, final=False)

    @workflow.update(name="provide_input")
    async def provide_input(self, answer: dict[str, Any]) -> None:
        await self._settle("input", answer, approved=False)

    @provide_input.validator
    def _check_provide_input(self, answer: dict[str, Any]) -> None:
        self._check("input", answer, final=False)
        if "value" not in answer:
            raise ApplicationError("an answer needs a 'value'", type=BAD_DECISION)

    def _check(self, kind: str, decision: Any, *, final: bool) -> None:
        """Refuse a decision for no open request of ``kind`` (the client's InvalidArgument).
        While an attempt runs (``final`` false), an id not open yet may be the request it is
        opening: such a decision is held until the attempt ends, then checked again."""
        key = _KEYS[kind]
        if not isinstance(decision, dict) or not isinstance(decision.get(key), str):
            raise ApplicationError(f"a decision needs {key!r} (a str)", type=BAD_DECISION)
        for name in ("reason", "by"):
            if decision.get(name) is not None and not isinstance(decision[name], str):
                raise ApplicationError(f"{name!r} must be a str", type=BAD_DECISION)
        request_id = decision[key]
        opened = self._open.get(request_id)
        if opened is not None and opened["kind"] == kind:
            return
        decided = opened is None and request_id in self._decided
        if not decided and not final and self._running:
            return
        waiting = ", ".join(repr(i) for i in self._open if self._open[i]["kind"] == kind)
        what = "approval request" if kind == "approval" else "input request"
        state = "was already decided" if decided else f"is not an open {what}"
        raise ApplicationError(
            f"{request_id!r} {state} (open: {waiting or 'none'})", type=BAD_DECISION
        )

    async def _settle(self, kind: str, decision: dict[str, Any], *, approved: bool) -> None:
        """Record a decision; one that came while an attempt ran waits for its end."""
        if decision[_KEYS[kind]] not in self._open:
            await workflow.wait_condition(lambda: not self._running)
            self._check(kind, decision, final=True)
        self._decide(kind, decision, approved=approved)

    def _decide(self, kind: str, decision: dict[str, Any], *, approved: bool) -> None:
        request_id = decision[_KEYS[kind]]
        self._open.pop(request_id, None)
        self._decided[request_id] = {
            "request_id": request_id,
            "kind": kind,
            "approved": approved,
            "value": decision.get("value"),
            "reason": decision.get("reason"),
            "by": decision.get("by"),
            "waited": _now() - self._since,
        }

    @workflow.run
    async def run(self, request: dict[str, Any]) -> dict[str, Any]:
        timeout: float | None = request.get("timeout")
        deadline: float | None = None
        if timeout is not None:
            # An absolute deadline, so that a retried attempt gets only the time that is left.
            deadline = _now() + timeout
            request = {**request, "deadline": deadline}
        while True:
            outcome = await self._attempt(request)
            waiting = outcome.get("waiting")
            if waiting is None:
                break
            self._open = {r["id"]: r for r in waiting["requests"]}
            for request_id in self._open:  # an answer that did not fit is asked for again
                self._decided.pop(request_id, None)
            self._since = _now()
            self._running = False
            stop = await self._wait(deadline)
            request = {
                **request,
                "journal": waiting["journal"],
                "decisions": list(self._decided.values()),
                "stop": stop,
            }
            if stop is not None:
                outcome = await self._attempt(request)
                break
        self._running = False
        # Decisions held while the last attempt ran are refused now, not left hanging.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return outcome

    async def _wait(self, deadline: float | None) -> dict[str, Any] | None:
        """Wait until every open request is decided or out of time (then decided as timed
        out); ``None``, or why the execution stops instead (cancelled, or its timeout)."""
        while self._open:
            now = _now()
            ends = [] if deadline is None else [deadline]
            limits = [r.get("timeout") for r in self._open.values()]
            ends += [self._since + limit for limit in limits if limit is not None]
            left = max(0.0, min(ends) - now) if ends else None
            try:
                await workflow.wait_condition(lambda: not self._open, timeout=left)
            except asyncio.CancelledError:
                return {"source": "signal"}
            except builtins.TimeoutError:
                pass
            if deadline is not None and _now() >= deadline:
                return {"source": "timeout"}
            waited = _now() - self._since
            for request_id, opened in list(self._open.items()):
                limit = opened.get("timeout")
                if limit is not None and waited >= limit:
                    self._open.pop(request_id)
                    self._decided[request_id] = {
                        "request_id": request_id,
                        "kind": opened["kind"],
                        "reason": _no_decision(opened, limit),
                        "waited": waited,
                        "timed_out": True,
                    }
        return None

    async def _attempt(self, request: dict[str, Any]) -> dict[str, Any]:
        """One activity (Temporal retries it after a lost worker): its outcome as data."""
        self._running = True
        heartbeat = timedelta(seconds=float(request["heartbeat_timeout"]))
        deadline: float | None = request.get("deadline")
        if deadline is None or request.get("stop") is not None:
            attempt, schedule = NO_TIMEOUT_ATTEMPT, None
        else:
            left = max(0.0, deadline - _now())
            attempt = timedelta(seconds=left) + DEADLINE_GRACE
            schedule = attempt
        handle = workflow.start_activity(
            ACTIVITY_NAME,
            request,
            start_to_close_timeout=attempt,
            schedule_to_close_timeout=schedule,
            heartbeat_timeout=heartbeat,
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=1),
                maximum_attempts=int(request["max_attempts"]),
                non_retryable_error_types=[BAD_REQUEST],
            ),
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        try:
            try:
                outcome: dict[str, Any] = await handle
            except asyncio.CancelledError:
                # The workflow was cancelled: the activity was asked to stop and ends the
                # execution as canceled; its Result is what this workflow returns.
                outcome = await asyncio.shield(handle)
        except ActivityError as error:
            return {"unfinished": _unfinished(error)}
        return outcome


def _now() -> float:
    """The workflow's time (replays see the same), in seconds since the epoch."""
    return workflow.now().timestamp()


def _no_decision(request: dict[str, Any], limit: float) -> str:
    """The reason a request nobody decided in time gets (the same words as in process)."""
    if request["kind"] == "approval":
        return f"no decision within {limit:g} s"
    return f"no answer to {request.get('prompt')!r} within {limit:g} s"


def _unfinished(error: ActivityError) -> dict[str, Any]:
    """Why no attempt produced a Result, as data the client turns into one."""
    cause = error.cause
    if isinstance(cause, TimeoutError):
        kind = cause.type.name if cause.type else "timeout"
        return {
            "status": "canceled",
            "source": "timeout",
            "reason": f"Temporal timed the execution out ({kind}): no worker finished it in time",
        }
    if isinstance(cause, ApplicationError):
        return {
            "status": "failed",
            "type": cause.type or "ApplicationError",
            "message": cause.message,
        }
    if cause is not None and type(cause).__name__ == "CancelledError":
        return {
            "status": "canceled",
            "source": "signal",
            "reason": "the Temporal workflow was cancelled before a worker started it",
        }
    return {
        "status": "failed",
        "type": type(cause or error).__name__,
        "message": str(cause or error),
    }
