"""agtl: a trio runtime for LLM agent workflows.

Workflows are coroutines or async generators that receive a :class:`Session`. A
:class:`Provider` runs them as executions inside cancel scopes that merge the handle's
``cancel()``, external :class:`CancelSignal` s, timeouts and usage limits; every execution
ends in exactly one frozen :class:`Result` with a :class:`Summary` of usage, cost and timings.
"""

import importlib
from typing import TYPE_CHECKING

from agtl._approvals import ApprovalRequest, InputRequest
from agtl._call_spec import MAX_STEPS_PROMPT
from agtl._fallback import BreakerState, Health
from agtl._limiter import SharedLimits
from agtl._object_stream import ObjectStream
from agtl._sync import run
from agtl._tool_loop import TextPart, ToolCallFinished, ToolCallStarted, ToolLoopStream
from agtl._tool_runner import ChildPart, ToolProgress
from agtl._vocabulary import ToolCallStatus
from agtl.agent import Agent, AgentResult, Handoff, HandoffLoopError, SubAgentError, handoff
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
    GuardrailTripped,
    IncompleteStreamError,
    InputTimeoutError,
    InvalidArgumentError,
    LLMError,
    LLMTimeoutError,
    ModelNotFoundError,
    NoTerminalEventError,
    NotInToolError,
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
    UnserializableValueError,
    WorkflowFailure,
)
from agtl.events import Event, EventMetrics
from agtl.execution import Execution, SimpleExecution, StreamingExecution
from agtl.guardrails import Guardrail, GuardrailStage, Verdict, guardrail
from agtl.journal import CallJournal, JournalEntry, ToolEntry
from agtl.limits import UsageLimits
from agtl.messages import Message, Role, ToolCallRequest
from agtl.options import GenerationOptions
from agtl.pricing import BUNDLED_PRICING, Price, PricingTable
from agtl.provider import FallbackProvider, HedgedProvider, Provider
from agtl.race import race
from agtl.result import CancelInfo, CancelSource, Partial, Result, Status
from agtl.session import Session, Step, TextResult, TextStream
from agtl.signals import CancelSignal, any_of
from agtl.summary import (
    Approval,
    ChildSummary,
    CostEntry,
    ErrorInfo,
    GuardrailRecord,
    LLMCallSummary,
    RecordEntry,
    Summary,
    ToolCall,
)
from agtl.tools import Tool, ToolCallInfo, current_tool_call, report_progress, tool
from agtl.usage import Provenance, Usage, estimate_tokens

__version__ = "0.1.0"

__all__ = [  # noqa: RUF022 - grouped by concern, not alphabetical
    # executions and providers
    "Execution",
    "SimpleExecution",
    "StreamingExecution",
    "Provider",
    "FallbackProvider",
    "HedgedProvider",
    "Health",
    "BreakerState",
    "race",
    "run",
    "aio",
    "GenerationOptions",
    "CallJournal",
    "JournalEntry",
    "ToolEntry",
    "SharedLimits",
    # sessions and model calls
    "Session",
    "TextStream",
    "ObjectStream",
    "TextResult",
    "Step",
    "Message",
    "Role",
    "Conversation",
    "ConversationFileError",
    "Entry",
    "Turn",
    "CancelMarker",
    "Event",
    "EventMetrics",
    # results, summaries, usage and cost
    "Result",
    "Status",
    "Partial",
    "Summary",
    "ChildSummary",
    "LLMCallSummary",
    "CostEntry",
    "RecordEntry",
    "ErrorInfo",
    "Usage",
    "Provenance",
    "estimate_tokens",
    "Price",
    "PricingTable",
    "BUNDLED_PRICING",
    # cancellation and limits
    "CancelSignal",
    "any_of",
    "CancelInfo",
    "CancelSource",
    "UsageLimits",
    # guardrails (the built-in examples are in agtl.guardrails)
    "Guardrail",
    "GuardrailStage",
    "GuardrailRecord",
    "GuardrailTripped",
    "Verdict",
    "guardrail",
    # tools
    "Tool",
    "tool",
    "MAX_STEPS_PROMPT",
    "Agent",
    "AgentResult",
    "SubAgentError",
    "Handoff",
    "HandoffLoopError",
    "handoff",
    "report_progress",
    "current_tool_call",
    "ToolCallInfo",
    "ApprovalRequest",
    "Approval",
    "InputRequest",
    "ToolCall",
    "ToolCallRequest",
    "ToolCallStatus",
    "ToolProgress",
    "ChildPart",
    "ToolLoopStream",
    "TextPart",
    "ToolCallStarted",
    "ToolCallFinished",
    # the backend protocol (for provider authors)
    "GenerationRequest",
    "GenerationStream",
    "CallReport",
    "StopReason",
    "ToolSpec",
    # errors
    "AgtlError",
    "InvalidArgumentError",
    "ExecutionClosedError",
    "NotInTrioError",
    "NotInToolError",
    "NoTerminalEventError",
    "WorkflowFailure",
    "ExecutionCancelled",
    "ExecutionFailed",
    "RemoteError",
    "UnserializableValueError",
    "LLMError",
    "LLMTimeoutError",
    "CallTimeoutError",
    "FirstTokenTimeoutError",
    "StallTimeoutError",
    "ContextLengthError",
    "OutputValidationError",
    "ProviderError",
    "RateLimitError",
    "AuthenticationError",
    "PermissionDeniedError",
    "ModelNotFoundError",
    "BadRequestError",
    "ServerError",
    "ProviderTimeoutError",
    "ProviderConnectionError",
    "IncompleteStreamError",
    "InputTimeoutError",
    "ToolError",
    "ToolLoopError",
    "ToolArgumentsError",
    # the package
    "__version__",
]

if TYPE_CHECKING:  # for type checkers only: at run time ``aio`` loads on first use
    from agtl import aio


def __getattr__(name: str) -> object:
    """``agtl.aio`` on first use: the asyncio bridge is an integration on top of the core,
    so ``import agtl`` does not load it (PEP 562)."""
    if name == "aio":
        return importlib.import_module("agtl.aio")
    raise AttributeError(f"module 'agtl' has no attribute {name!r}")


def _public_home() -> None:
    """Names defined in a private module say they live in ``agtl``, where users find them
    (reprs, docs and tracebacks then show ``agtl.TextPart``, not ``agtl._tool_loop.TextPart``)."""
    for name in __all__:
        if name == "aio":
            continue
        value = globals()[name]
        module = getattr(value, "__module__", None)
        if isinstance(module, str) and module.startswith("agtl._"):
            value.__module__ = "agtl"


_public_home()
