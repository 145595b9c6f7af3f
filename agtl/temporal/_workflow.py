"""The ready Temporal workflow: run one agtl execution as one activity and return its Result.

This module is loaded again inside Temporal's workflow sandbox, so it imports only the SDK
and the standard library; the activity is named, not imported. The workflow's return value
is data: ``{"result": Result.to_dict()}`` when the activity ran the execution, or
``{"unfinished": {...}}`` when no attempt could (no worker in time, retries used up, a bad
request). A cancel of the workflow is passed on to the activity, which ends the execution
as ``canceled`` and returns its Result; the workflow waits for it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

__all__ = ["ACTIVITY_NAME", "BAD_REQUEST", "WORKFLOW_NAME", "ExecutionWorkflow"]

WORKFLOW_NAME = "agtl.Execution"
ACTIVITY_NAME = "agtl.execute"
#: The error type of a request no attempt can fix (unknown workflow, bad provider spec).
BAD_REQUEST = "AgtlBadRequest"
#: Without a timeout, how long one attempt may run before Temporal gives up on it.
NO_TIMEOUT_ATTEMPT = timedelta(hours=24)
#: Past the agtl deadline, how long Temporal waits for agtl to end the execution itself.
DEADLINE_GRACE = timedelta(seconds=30)


@workflow.defn(name=WORKFLOW_NAME)
class ExecutionWorkflow:
    """Runs the ``agtl.execute`` activity once (with retries after a worker is lost)."""

    @workflow.run
    async def run(self, request: dict[str, Any]) -> dict[str, Any]:
        timeout: float | None = request.get("timeout")
        heartbeat = timedelta(seconds=float(request["heartbeat_timeout"]))
        if timeout is None:
            attempt = NO_TIMEOUT_ATTEMPT
            schedule: timedelta | None = None
        else:
            # An absolute deadline, so that a retried attempt gets only the time that is left.
            request = {**request, "deadline": workflow.now().timestamp() + timeout}
            attempt = timedelta(seconds=timeout) + DEADLINE_GRACE
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
