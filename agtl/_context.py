"""What everything that runs on behalf of an execution needs of it, as one frozen value.

The session (the workflow's face), each LLM call (``_call``) and the tool runner read the
execution through this one object, made once by the host when the execution starts; none of
them carries the pieces separately.
"""

from __future__ import annotations

import attrs

from agtl._cancel import Cancellation
from agtl._logging import ExecutionLogger
from agtl._runtime import Runtime
from agtl._state import ExecutionState
from agtl._tree import Node
from agtl.limits import UsageLimits

__all__ = ["ExecutionContext"]


@attrs.frozen
class ExecutionContext:
    """One execution as its parts see it: its state (the one writer of what it
    accumulates), its cancellation, what the provider lent it, its budgets, its logger, and
    its place in its tree of executions."""

    state: ExecutionState
    cancellation: Cancellation
    runtime: Runtime
    limits: UsageLimits | None
    log: ExecutionLogger
    #: Its place in its tree of executions (the budgets of the ones above it).
    node: Node
