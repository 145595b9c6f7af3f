"""The public surface of ``agtl``: exactly these names, each with a public home.

Adding, removing or renaming an exported name is a deliberate change to this list (and to
the guides), never a side effect of moving code.
"""

from __future__ import annotations

import agtl

EXPORTED = {
    # executions and providers
    *("Execution", "SimpleExecution", "StreamingExecution", "Provider", "race", "run", "aio"),
    *("GenerationOptions", "CallJournal", "JournalEntry", "ToolEntry", "SharedLimits"),
    *("FallbackProvider", "HedgedProvider", "Health", "BreakerState"),
    # sessions and model calls
    *("Session", "TextStream", "TextResult", "Step", "Message", "Role", "Conversation"),
    *("ConversationFileError", "Entry", "Turn", "CancelMarker", "Event", "EventMetrics"),
    # results, summaries, usage and cost
    *("Result", "Status", "Partial", "Summary", "ChildSummary", "LLMCallSummary", "CostEntry"),
    *("RecordEntry", "ErrorInfo", "Usage", "Provenance", "estimate_tokens", "Price"),
    *("PricingTable", "BUNDLED_PRICING"),
    # cancellation and limits
    *("CancelSignal", "any_of", "CancelInfo", "CancelSource", "UsageLimits"),
    # tools
    *("Tool", "tool", "report_progress", "ToolCall", "ToolCallRequest", "ToolCallStatus"),
    "MAX_STEPS_PROMPT",
    *("Agent", "AgentResult", "SubAgentError", "Handoff", "HandoffLoopError", "handoff"),
    "ChildPart",
    *("current_tool_call", "ToolCallInfo", "NotInToolError", "ApprovalRequest", "Approval"),
    *("InputRequest", "InputTimeoutError"),
    *("ToolProgress", "ToolLoopStream", "TextPart", "ToolCallStarted", "ToolCallFinished"),
    # guardrails and typed output that streams
    *("Guardrail", "GuardrailStage", "GuardrailRecord", "GuardrailTripped", "Verdict"),
    *("guardrail", "ObjectStream"),
    # the backend protocol
    *("GenerationRequest", "GenerationStream", "CallReport", "StopReason", "ToolSpec"),
    # errors
    *("AgtlError", "InvalidArgumentError", "ExecutionClosedError", "NotInTrioError"),
    *("NoTerminalEventError", "WorkflowFailure", "ExecutionCancelled", "ExecutionFailed"),
    *("RemoteError", "LLMError", "LLMTimeoutError", "CallTimeoutError", "FirstTokenTimeoutError"),
    *("StallTimeoutError", "ContextLengthError", "OutputValidationError", "ProviderError"),
    *("RateLimitError", "AuthenticationError", "PermissionDeniedError", "ModelNotFoundError"),
    *("BadRequestError", "ServerError", "ProviderTimeoutError", "ProviderConnectionError"),
    *("IncompleteStreamError", "ToolError", "ToolLoopError", "ToolArgumentsError"),
    "UnserializableValueError",
    # the package
    "__version__",
}


def test_the_exported_names_are_exactly_these() -> None:
    assert len(agtl.__all__) == len(set(agtl.__all__)), "a name is exported twice"
    assert set(agtl.__all__) == EXPORTED, {
        "added": sorted(set(agtl.__all__) - EXPORTED),
        "gone": sorted(EXPORTED - set(agtl.__all__)),
    }


def test_every_exported_name_resolves_and_has_a_public_home() -> None:
    private = []
    for name in agtl.__all__:
        value = getattr(agtl, name)
        module = getattr(value, "__module__", None)
        if isinstance(module, str) and module.split(".")[-1].startswith("_"):
            private.append(f"{name}: {module}")
    assert private == []


def test_every_error_is_an_agtl_error() -> None:
    errors = [getattr(agtl, n) for n in agtl.__all__ if n.endswith(("Error", "Failure"))]
    errors += [agtl.ExecutionCancelled, agtl.ExecutionFailed]
    assert all(issubclass(error, agtl.AgtlError) for error in errors)
