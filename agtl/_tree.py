"""An execution's place in its tree of executions, so that budgets bound the whole tree.

An execution started inside another's workflow (a sub-agent, say) is its child. Each
execution has a :class:`Node`: its state, budgets and cancellation, its parent's node, and
what its descendants have used so far. A call or a tool call anywhere in the tree is checked
against the budgets of every ancestor as well as its own execution's. When one would cross an
ancestor's budget, the execution making it is cut like any call over budget. So is the
ancestor, with a reason naming the execution that crossed it.

The descendants' figures grow as their calls settle (usage, cost) and start (requests, tool
calls). An execution's summary keeps its own usage (``total_usage``); its whole tree is
``tree_usage`` (its own plus its children's, each child's being its own subtree), so a
report never counts a child twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import attrs

from agtl._cancel import Cancellation
from agtl._state import ExecutionState
from agtl._vocabulary import CancelSource
from agtl.limits import UsageLimits
from agtl.usage import Usage

__all__ = ["Node"]


@attrs.define(eq=False)
class Node:
    """One execution in its tree, and what its descendants used so far."""

    state: ExecutionState
    limits: UsageLimits | None
    cancellation: Cancellation
    parent: Node | None = None
    usage: Usage = attrs.Factory(lambda: Usage(0, 0))
    cost: Decimal | None = Decimal(0)
    requests: int = 0
    tool_calls: int = 0
    #: Whether an execution above this one has a token or cost budget (fixed at the start:
    #: asked on every streamed piece).
    watched: bool = attrs.field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        self.watched = any(
            n.limits is not None and n.limits.watches_usage for n in self.ancestors()
        )

    @property
    def label(self) -> str:
        workflow = self.state.workflow
        return f"execution {self.state.execution_id[:8]}" + (f" ({workflow})" if workflow else "")

    def ancestors(self) -> Iterator[Node]:
        node = self.parent
        while node is not None:
            yield node
            node = node.parent

    # -- what descendants start and settle -------------------------------------------------
    def request_refusal(self) -> str | None:
        """Why one more LLM call here would cross an ancestor's ``max_requests`` (``None``:
        none would); counted for every ancestor when it may start."""
        for node in self.ancestors():
            if node.limits is not None:
                started = len(node.state.calls) + node.requests
                refusal = node.limits.request_refusal(started)
                if refusal is not None:
                    return self._cut(node, refusal)
        for node in self.ancestors():
            node.requests += 1
        return None

    def tool_call_refusal(self) -> str | None:
        """The same for one more tool call and ``max_tool_calls``."""
        for node in self.ancestors():
            if node.limits is not None:
                started = node.state.tool_calls_started + node.tool_calls
                refusal = node.limits.tool_call_refusal(started)
                if refusal is not None:
                    return self._cut(node, refusal)
        for node in self.ancestors():
            node.tool_calls += 1
        return None

    def usage_violation(self, running: Usage, running_cost: Decimal | None) -> str | None:
        """Whether a call running here, having used ``running`` so far, crosses a token or
        cost budget of an ancestor (its own use, its descendants' settled use, and this)."""
        for node in self.ancestors():
            limits = node.limits
            if limits is None or not limits.watches_usage:
                continue
            own, own_cost = node.state.usage_and_cost()
            usage = own + node.usage + running
            cost = None
            if own_cost is not None and node.cost is not None and running_cost is not None:
                cost = own_cost + node.cost + running_cost
            violation = limits.usage_violation(usage, cost)
            if violation is not None:
                return self._cut(node, violation)
        return None

    def settled(self, usage: Usage, cost: Decimal | None) -> None:
        """A call here ended with these figures: every ancestor's descendants used them."""
        for node in self.ancestors():
            node.usage = node.usage + usage
            node.cost = None if node.cost is None or cost is None else node.cost + cost

    def _cut(self, ancestor: Node, violation: str) -> str:
        """Stop ``ancestor`` (its budget is spent) naming this execution; the reason this
        execution's own call gets."""
        ancestor.cancellation.request(
            CancelSource.LIMIT, f"{violation} in the tree, by {self.label}"
        )
        return f"{violation} for {ancestor.label}, an execution above this one"
