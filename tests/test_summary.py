"""Summaries, usage arithmetic and pricing."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

import agtl
from agtl import Price, Provenance, Session, Usage
from agtl.testing import Reply, ScriptedProvider

figures = st.one_of(st.none(), st.integers(min_value=0, max_value=10**9))
provenances = st.sampled_from(list(Provenance))
usages = st.builds(
    Usage,
    input_tokens=figures,
    output_tokens=figures,
    cached_input_tokens=figures,
    reasoning_tokens=figures,
    provenance=provenances,
)


@given(usages, usages)
def test_usage_sum_is_unknown_when_a_part_is_unknown(a: Usage, b: Usage) -> None:
    total = a + b
    for field in ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens"):
        left, right = getattr(a, field), getattr(b, field)
        expected = None if left is None or right is None else left + right
        assert getattr(total, field) == expected
    ranks = list(Provenance)
    assert ranks.index(total.provenance) == max(
        ranks.index(a.provenance), ranks.index(b.provenance)
    )


def test_usage_total_defaults_to_input_plus_output() -> None:
    assert Usage(3, 4).total_tokens == 7
    assert Usage(3, None).total_tokens is None
    assert Usage.zero().total_tokens == 0


@given(
    st.integers(min_value=0, max_value=10**7),
    st.integers(min_value=0, max_value=10**7),
    st.integers(min_value=0, max_value=10**7),
)
def test_price_cost_is_exact(inp: int, cached: int, out: int) -> None:
    price = Price("2.50", "10", "1.25")
    cached = min(cached, inp)
    cost = price.cost(Usage(inp, out, cached_input_tokens=cached))
    expected = (
        Decimal(inp - cached) * Decimal("2.50")
        + Decimal(cached) * Decimal("1.25")
        + Decimal(out) * 10
    ) / 1_000_000
    assert cost == expected


def test_price_of_unknown_usage_is_unknown() -> None:
    assert Price(1, 1).cost(Usage(None, 5)) is None


def test_bundled_table_resolves_aliases_and_dated_suffixes() -> None:
    table = agtl.BUNDLED_PRICING
    assert table.as_of is not None
    gpt4o = table.lookup("gpt-4o")
    assert gpt4o is not None
    assert table.lookup("gpt-4o-2024-08-06") == gpt4o
    assert table.lookup("GPT-4o") == gpt4o
    assert table.lookup("openai/gpt-4o") == gpt4o
    assert table.lookup("chatgpt-4o-latest") == gpt4o
    assert table.lookup("claude-sonnet-4-20250514") == table.lookup("claude-sonnet-4")
    assert table.lookup("no-such-model") is None


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [({"input": -1, "output": 1}, "input"), ({"input": 1, "output": "abc"}, "output")],
)
def test_bad_prices_name_the_field(kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises(agtl.InvalidArgumentError) as info:
        Price(**kwargs)
    assert info.value.argument == argument


class PricedProvider(ScriptedProvider):
    """A scripted provider that pretends to be a hosted (priced) backend."""

    name = "hosted"
    is_local = False


async def test_cost_by_model_total_cost_and_additional_costs() -> None:
    provider = PricedProvider(
        Reply("a b", usage=Usage(1000, 2000, provenance=Provenance.PROVIDER), model="gpt-4o"),
        Reply("c", usage=Usage(500, 100, provenance=Provenance.PROVIDER)),
    ).with_default_model("gpt-4o-mini")

    async def fn(session: Session) -> None:
        await session.generate_text(prompt="x", model="gpt-4o")
        await session.generate_text(prompt="y")
        session.record_cost("web search", "0.01", {"queries": 1})
        session.record_tool_call("search", {"q": "x"}, ["hit"], duration=0.2)
        session.record("note", {"k": 1})
        session.set_metadata(user="u1")

    summary = (await provider.simple_execution(fn).result()).summary
    gpt4o = Decimal(1000) * Decimal("2.50") / 10**6 + Decimal(2000) * 10 / 10**6
    mini = Decimal(500) * Decimal("0.15") / 10**6 + Decimal(100) * Decimal("0.60") / 10**6
    assert summary.cost_by_model == {"hosted/gpt-4o": gpt4o, "hosted/gpt-4o-mini": mini}
    assert summary.cost == gpt4o + mini
    assert summary.total_cost == gpt4o + mini + Decimal("0.01")
    assert summary.total_usage == Usage(1500, 2100, provenance=Provenance.PROVIDER)
    assert summary.tool_calls[0].name == "search"
    assert summary.records[0].kind == "note"
    assert summary.metadata == {"user": "u1"}
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["cost"] == str(gpt4o + mini)
    assert data["llm_calls"][0]["usage"]["provenance"] == "provider"
    assert data["llm_calls"][0]["stop_reason"] == "eos"
    assert data["additional_costs"][0]["amount"] == "0.01"
    text = summary.format()
    assert "hosted/gpt-4o" in text
    assert "web search" in text


async def test_unknown_price_gives_none_and_warns_once() -> None:
    provider = PricedProvider("a", "b", "c").with_default_model("unpriced-model-xyz")

    async def fn(session: Session) -> None:
        for _ in range(3):
            await session.generate_text(prompt="x")

    with capture_logs() as logs:
        summary = (await provider.simple_execution(fn).result()).summary
        summary_again = (
            await provider.with_default_options().simple_execution(fn).result()
        ).summary
    assert summary.cost is None
    assert summary.total_cost is None
    assert summary_again.cost is None
    warnings = [e for e in logs if e["event"] == "pricing.unknown_model"]
    assert len(warnings) == 1
    assert warnings[0]["model"] == "hosted/unpriced-model-xyz"


async def test_local_models_are_free_unless_overridden() -> None:
    async def fn(session: Session) -> None:
        await session.generate_text(prompt="x")

    free = await ScriptedProvider("a b").simple_execution(fn).result()
    assert free.summary.cost == 0
    priced = ScriptedProvider("a b").with_pricing({"scripted-model": Price(0, 1_000_000)})
    result = await priced.simple_execution(fn).result()
    assert result.summary.cost == 2


async def test_summary_after_failure_keeps_records_and_calls() -> None:
    async def fn(session: Session) -> None:
        session.record("step", 1)
        await session.generate_text(prompt="x")
        raise RuntimeError("after the call")

    result = await ScriptedProvider("hello there").simple_execution(fn).result()
    assert result.status is agtl.Status.FAILED
    assert result.summary.llm_call_count == 1
    assert result.summary.records[0].data == 1
    assert json.dumps(result.summary.to_dict())


async def test_with_methods_return_new_providers_and_share_the_backend() -> None:
    base = ScriptedProvider("one", "two")
    configured = base.with_default_model("m").with_default_options(temperature=0.2, max_tokens=5)
    assert base.default_model == "scripted-model"
    assert configured.default_model == "m"
    assert base.default_options == agtl.GenerationOptions()
    assert configured.default_options.temperature == 0.2

    async def fn(session: Session) -> None:
        await session.generate_text(prompt="x", max_tokens=7)

    await configured.simple_execution(fn).result()
    await base.simple_execution(fn).result()
    assert len(base.calls) == 2  # the script is shared
    first = base.calls[0]
    assert first.model == "m"
    assert first.options.temperature == 0.2
    assert first.options.max_tokens == 7  # the per-call value wins
    assert repr(configured) == "ScriptedProvider(model='m')"


# -- executions started inside a workflow ------------------------------------------------------
def _usage(output: int) -> Usage:
    return Usage(input_tokens=10, output_tokens=output, provenance=Provenance.PROVIDER)


async def test_executions_started_inside_a_workflow_are_linked_to_their_parent() -> None:
    provider = ScriptedProvider(
        Reply("a", usage=_usage(3)),
        Reply("b", usage=_usage(5)),
        Reply("c", usage=_usage(7)),
        model="m",
    ).with_pricing({"m": Price(input=1, output=1000)})  # $0.001 per output token
    children: list[agtl.Execution[Any]] = []

    async def grandchild(session: Session) -> str:
        return (await session.generate_text(prompt="g")).text

    async def child(session: Session) -> str:
        session.record_cost("search", Decimal("0.002"))
        inner = provider.simple_execution(grandchild)
        children.append(inner)
        await inner
        return (await session.generate_text(prompt="c")).text

    async def streamed_child(session: Session):  # type: ignore[no-untyped-def]
        yield await session.done("nothing to say")

    async def parent(session: Session) -> str:
        first = provider.simple_execution(child)
        children.append(first)
        await first
        async with provider.streaming_execution(streamed_child) as second:
            children.append(second)
        return (await session.generate_text(prompt="p")).text

    result = await provider.simple_execution(parent)
    summary = result.summary
    first, grand, second = children
    assert summary.parent_id is None
    assert [c.execution_id for c in summary.children] == [
        first.execution_id,
        second.execution_id,
    ]
    assert first.outcome is not None
    assert grand.outcome is not None
    assert second.outcome is not None
    assert first.outcome.summary.parent_id == result.execution_id
    assert grand.outcome.summary.parent_id == first.execution_id
    assert second.outcome.summary.parent_id == result.execution_id
    # The child's entry counts its own call (b, 5 out), its grandchild's (a, 3) and its $0.002.
    entry = summary.children[0]
    assert entry.status is agtl.Status.SUCCEEDED
    assert entry.usage.output_tokens == 3 + 5
    # $0.002 recorded, 8 output tokens at $0.001, 20 input tokens at $0.000001.
    assert entry.cost == Decimal("0.002") + Decimal("0.008") + Decimal("0.00002")
    assert summary.children_usage.output_tokens == 8
    assert summary.total_usage.output_tokens == 7  # the parent's own call only
    data = json.loads(json.dumps(summary.to_dict()))
    assert [c["execution_id"] for c in data["children"]] == [
        first.execution_id,
        second.execution_id,
    ]
    assert data["children_usage"]["output_tokens"] == 8
    assert "children  2" in summary.format()


async def test_raced_executions_are_children_and_independent_ones_are_not() -> None:
    provider = ScriptedProvider(respond=lambda request: Reply("x", delay=0.01))

    async def ask(session: Session) -> str:
        return (await session.generate_text(prompt="q")).text

    async def racer(session: Session) -> str:
        won = await agtl.race(provider.simple_execution(ask), provider.simple_execution(ask))
        return str(won.value)

    result = await provider.simple_execution(racer)
    statuses = sorted(c.status.value for c in result.summary.children)
    assert statuses == ["canceled", "succeeded"]
    alone = await provider.simple_execution(ask)
    assert alone.summary.parent_id is None
    assert alone.summary.children == ()


class _SilentLengthStop(agtl.Provider):
    """A backend that reports no output figure and says the length limit ended the call."""

    async def start_generation(self, request: agtl.GenerationRequest) -> agtl.GenerationStream:
        return _SilentStream()


class _SilentStream(agtl.GenerationStream):
    def __init__(self) -> None:
        self.sent = False

    async def next_delta(self) -> str | None:
        await trio.lowlevel.checkpoint()
        if self.sent:
            return None
        self.sent = True
        return "telecommunications " * 10  # 190 characters: 48 tokens by estimate

    def report(self) -> agtl.CallReport:
        stop = agtl.StopReason.LENGTH if self.sent else None
        return agtl.CallReport(Usage(input_tokens=5, provenance=Provenance.PROVIDER), stop)

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def test_estimated_output_is_clamped_to_max_tokens_on_a_length_stop() -> None:
    async def ask(session: Session) -> agtl.TextResult:
        return await session.generate_text(prompt="q", model="m", max_tokens=12)

    reply = (await _SilentLengthStop().simple_execution(ask)).unwrap()
    assert agtl.estimate_tokens(reply.text) == 48
    assert reply.usage.output_tokens == 12
    assert reply.usage.provenance is Provenance.ESTIMATED
