"""agtl: a trio runtime for LLM agent workflows.

Workflows are coroutines or async generators that receive a :class:`Session`. A
:class:`Provider` runs them as executions inside cancel scopes that merge the handle's
``cancel()``, external :class:`CancelSignal` s, timeouts and usage limits; every execution
ends in exactly one frozen :class:`Result` with a :class:`Summary` of usage, cost and timings.
"""

import importlib
from typing import TYPE_CHECKING

from agtl._sync import run
from agtl._tool_loop import TextPart, ToolCallFinished, ToolCallStarted, ToolLoopStream
from agtl._tool_runner import ToolProgress
from agtl._vocabulary import ToolCallStatus
from agtl.backend import CallReport, GenerationRequest, GenerationStream, StopReason, ToolSpec
from agtl.conversation import CancelMarker, Conversation, ConversationFileError, Entry, Turn
from agtl.errors import (
    AgtlError,
    AuthenticationError,
    BadRequestError,
    CallTimeoutError,
    ContextLengthError,
    ExecutionCancelled,
    ExecutionClosedError,
    ExecutionFailed,
    FirstTokenTimeoutError,
    IncompleteStreamError,
    InvalidArgumentError,
    LLMError,
    LLMTimeoutError,
    ModelNotFoundError,
    NoTerminalEventError,
    NotInTrioError,
    OutputValidationError,
    PermissionDeniedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    RemoteError,
    ServerError,
    StallTimeoutError,
    ToolArgumentsError,
    ToolError,
    ToolLoopError,
    WorkflowFailure,
)
from agtl.events import Event, EventMetrics
from agtl.execution import Execution, SimpleExecution, StreamingExecution
from agtl.journal import CallJournal, JournalEntry
from agtl.limits import UsageLimits
from agtl.messages import Message, Role, ToolCallRequest
from agtl.options import GenerationOptions
from agtl.pricing import BUNDLED_PRICING, Price, PricingTable
from agtl.provider import Provider
from agtl.race import race
from agtl.result import CancelInfo, CancelSource, Partial, Result, Status
from agtl.session import Session, Step, TextResult, TextStream
from agtl.signals import CancelSignal, any_of
from agtl.summary import (
    ChildSummary,
    CostEntry,
    ErrorInfo,
    LLMCallSummary,
    RecordEntry,
    Summary,
    ToolCall,
)
from agtl.tools import Tool, report_progress, tool
from agtl.usage import Provenance, Usage, estimate_tokens

__version__ = "0.1.0"

__all__ = [
    "BUNDLED_PRICING",
    "AgtlError",
    "AuthenticationError",
    "BadRequestError",
    "CallJournal",
    "CallReport",
    "CallTimeoutError",
    "CancelInfo",
    "CancelMarker",
    "CancelSignal",
    "CancelSource",
    "ChildSummary",
    "ContextLengthError",
    "Conversation",
    "ConversationFileError",
    "CostEntry",
    "Entry",
    "ErrorInfo",
    "Event",
    "EventMetrics",
    "Execution",
    "ExecutionCancelled",
    "ExecutionClosedError",
    "ExecutionFailed",
    "FirstTokenTimeoutError",
    "GenerationOptions",
    "GenerationRequest",
    "GenerationStream",
    "IncompleteStreamError",
    "InvalidArgumentError",
    "JournalEntry",
    "LLMCallSummary",
    "LLMError",
    "LLMTimeoutError",
    "Message",
    "ModelNotFoundError",
    "NoTerminalEventError",
    "NotInTrioError",
    "OutputValidationError",
    "Partial",
    "PermissionDeniedError",
    "Price",
    "PricingTable",
    "Provenance",
    "Provider",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeoutError",
    "RateLimitError",
    "RecordEntry",
    "RemoteError",
    "Result",
    "Role",
    "ServerError",
    "Session",
    "SimpleExecution",
    "StallTimeoutError",
    "Status",
    "Step",
    "StopReason",
    "StreamingExecution",
    "Summary",
    "TextPart",
    "TextResult",
    "TextStream",
    "Tool",
    "ToolArgumentsError",
    "ToolCall",
    "ToolCallFinished",
    "ToolCallRequest",
    "ToolCallStarted",
    "ToolCallStatus",
    "ToolError",
    "ToolLoopError",
    "ToolLoopStream",
    "ToolProgress",
    "ToolSpec",
    "Turn",
    "Usage",
    "UsageLimits",
    "WorkflowFailure",
    "__version__",
    "aio",
    "any_of",
    "estimate_tokens",
    "race",
    "report_progress",
    "run",
    "tool",
]

if TYPE_CHECKING:  # for type checkers only: at run time ``aio`` loads on first use
    from agtl import aio


def __getattr__(name: str) -> object:
    """``agtl.aio`` on first use: the asyncio bridge is an integration on top of the core,
    so ``import agtl`` does not load it (PEP 562)."""
    if name == "aio":
        return importlib.import_module("agtl.aio")
    raise AttributeError(f"module 'agtl' has no attribute {name!r}")
