"""agtl on Temporal: durable executions across many workers (extra ``agtl[temporal]``).

An agtl execution runs as one Temporal activity, on the trio guest run of the worker's asyncio
loop (:mod:`agtl.aio`). :func:`submit` starts the ready workflow, which runs one agtl workflow
function named by import path with JSON input; the handle's ``result()`` is the agtl
:class:`~agtl.Result`, rebuilt from data. Cancelling the Temporal workflow from anywhere
cancels the execution (source ``signal``, Temporal's reason); finished LLM calls travel in
the activity's heartbeats, so an attempt retried after a worker died replays them instead of
paying again. An execution that waits for a person (an approval, an answer) ends its attempt
and waits in the workflow, holding no worker: ``handle.pending()``, ``handle.approve(...)``,
``handle.deny(...)`` and ``handle.provide_input(...)`` decide, and the next attempt replays
what was done and goes on. Workers: :func:`serve`, or ``agtl worker`` on the command line.

The client side is asyncio, like Temporal's SDK.
"""

from agtl.temporal._activity import Executions
from agtl.temporal._client import (
    DEFAULT_TASK_QUEUE,
    ExecutionHandle,
    ExecutionNotFoundError,
    PendingRequest,
    Progress,
    gather,
    get_handle,
    result_of,
    submit,
)
from agtl.temporal._connection import (
    DEFAULT_ADDRESS,
    TemporalConfigError,
    TemporalUnavailableError,
    connect,
    connect_options,
)
from agtl.temporal._spec import ProviderSpec
from agtl.temporal._worker import serve
from agtl.temporal._workflow import ACTIVITY_NAME, WORKFLOW_NAME, ExecutionWorkflow

__all__ = [
    "ACTIVITY_NAME",
    "DEFAULT_ADDRESS",
    "DEFAULT_TASK_QUEUE",
    "WORKFLOW_NAME",
    "ExecutionHandle",
    "ExecutionNotFoundError",
    "ExecutionWorkflow",
    "Executions",
    "PendingRequest",
    "Progress",
    "ProviderSpec",
    "TemporalConfigError",
    "TemporalUnavailableError",
    "connect",
    "connect_options",
    "gather",
    "get_handle",
    "result_of",
    "serve",
    "submit",
]
