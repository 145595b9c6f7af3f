"""Usage limits: budgets that cancel an execution (source ``limit``) when exceeded."""

from __future__ import annotations

from decimal import Decimal

import attrs

from agtl.usage import Usage
from agtl.validation import check_count, check_decimal

__all__ = ["UsageLimits"]


def _requests(value: object) -> int | None:
    return None if value is None else check_count("max_requests", value)


def _input_tokens(value: object) -> int | None:
    return None if value is None else check_count("max_input_tokens", value)


def _output_tokens(value: object) -> int | None:
    return None if value is None else check_count("max_output_tokens", value)


def _total_tokens(value: object) -> int | None:
    return None if value is None else check_count("max_total_tokens", value)


def _tool_calls(value: object) -> int | None:
    return None if value is None else check_count("max_tool_calls", value)


def _money(value: object) -> Decimal | None:
    return None if value is None else check_decimal("max_cost", value)


@attrs.frozen
class UsageLimits:
    """Budgets for one execution; ``None`` means no limit.

    ``max_requests`` is checked before each LLM call starts, so the call that would exceed
    it is never sent. Token and cost budgets are checked as each call streams, after every
    piece of output, and again with the final figures when it ends: the call that crosses one
    is stopped at that piece and the execution is cancelled (source ``limit``), with the text
    produced so far kept in the Result's ``partial``. While a call streams, figures the
    backend has not reported yet (a remote server's usage comes at the end) are estimated from
    the text; a budget on a figure that is unknown (``None``) cannot be enforced and is
    skipped. ``max_tool_calls`` counts the tool calls the tool loop starts across the
    execution; the call that would exceed it is never started.
    """

    max_requests: int | None = attrs.field(default=None, converter=_requests)
    max_input_tokens: int | None = attrs.field(default=None, converter=_input_tokens)
    max_output_tokens: int | None = attrs.field(default=None, converter=_output_tokens)
    max_total_tokens: int | None = attrs.field(default=None, converter=_total_tokens)
    max_cost: Decimal | None = attrs.field(default=None, converter=_money)
    max_tool_calls: int | None = attrs.field(default=None, converter=_tool_calls)

    @property
    def watches_usage(self) -> bool:
        """Whether a token or cost budget is set (checked while calls stream)."""
        return (
            self.max_input_tokens is not None
            or self.max_output_tokens is not None
            or self.max_total_tokens is not None
            or self.max_cost is not None
        )

    def request_refusal(self, requests_started: int) -> str | None:
        """Why one more request may not start, or ``None`` if it may."""
        if self.max_requests is not None and requests_started >= self.max_requests:
            return f"max_requests={self.max_requests} reached"
        return None

    def tool_call_refusal(self, tool_calls_started: int) -> str | None:
        """Why one more tool call may not start, or ``None`` if it may."""
        if self.max_tool_calls is not None and tool_calls_started >= self.max_tool_calls:
            return f"max_tool_calls={self.max_tool_calls} reached"
        return None

    def usage_violation(self, usage: Usage, cost: Decimal | None) -> str | None:
        """Which budget ``usage``/``cost`` exceeds, or ``None``."""
        checks: list[tuple[str, int | Decimal | None, int | Decimal | None]] = [
            ("max_input_tokens", self.max_input_tokens, usage.input_tokens),
            ("max_output_tokens", self.max_output_tokens, usage.output_tokens),
            ("max_total_tokens", self.max_total_tokens, usage.total_tokens),
            ("max_cost", self.max_cost, cost),
        ]
        for name, limit, used in checks:
            if limit is not None and used is not None and used > limit:
                return f"{name}={limit} exceeded (used {used})"
        return None
