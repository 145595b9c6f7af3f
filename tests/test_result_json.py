"""Result and Summary round-trip through JSON (``to_dict`` / ``from_dict``), exactly."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import agtl
from agtl import (
    CancelInfo,
    CancelSource,
    ChildSummary,
    CostEntry,
    ErrorInfo,
    Event,
    EventMetrics,
    LLMCallSummary,
    Partial,
    Provenance,
    RecordEntry,
    Result,
    Status,
    StopReason,
    Summary,
    ToolCall,
    ToolCallStatus,
    Usage,
)
from agtl.testing import Reply, ScriptedProvider

finite = st.floats(allow_nan=False, allow_infinity=False)
seconds = st.floats(min_value=0, max_value=1e6, allow_nan=False)
text = st.text(max_size=20)
counts = st.one_of(st.none(), st.integers(min_value=0, max_value=10**9))
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), finite, text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)),
    max_leaves=8,
)
money = st.one_of(st.none(), st.decimals(min_value=0, max_value=10**6, places=6, allow_nan=False))
usages = st.builds(
    Usage,
    input_tokens=counts,
    output_tokens=counts,
    total_tokens=counts,
    cached_input_tokens=counts,
    reasoning_tokens=counts,
    provenance=st.sampled_from(list(Provenance)),
)
calls = st.builds(
    LLMCallSummary,
    index=st.integers(min_value=0, max_value=100),
    provider=text,
    model=text,
    started_at=seconds,
    ended_at=seconds,
    usage=usages,
    stop_reason=st.sampled_from(list(StopReason)),
    time_to_first_token=st.one_of(st.none(), seconds),
    output_tokens_per_second=st.one_of(st.none(), seconds),
    cost=money,
    error=st.one_of(st.none(), st.builds(ErrorInfo, text, text)),
    details=st.dictionaries(text, json_values, max_size=3),
)
tool_calls = st.builds(
    ToolCall,
    name=text,
    arguments=json_values,
    result=json_values,
    error=st.one_of(st.none(), text),
    duration=st.one_of(st.none(), seconds),
    at=seconds,
    status=st.sampled_from(list(ToolCallStatus)),
    call_id=st.one_of(st.none(), text),
    step=st.one_of(st.none(), st.integers(min_value=0, max_value=50)),
)
summaries = st.builds(
    Summary,
    execution_id=text,
    started_at=st.datetimes(timezones=st.just(dt.UTC)),
    duration=seconds,
    llm_calls=st.lists(calls, max_size=3).map(tuple),
    tool_calls=st.lists(tool_calls, max_size=3).map(tuple),
    records=st.lists(st.builds(RecordEntry, text, json_values, seconds), max_size=2).map(tuple),
    additional_costs=st.lists(
        st.builds(
            CostEntry,
            text,
            st.decimals(min_value=0, max_value=1000, places=4, allow_nan=False),
            json_values,
            seconds,
        ),
        max_size=2,
    ).map(tuple),
    metadata=st.dictionaries(text, json_values, max_size=3),
    parent_id=st.one_of(st.none(), text),
    children=st.lists(
        st.builds(ChildSummary, text, st.sampled_from(list(Status)), usages, money), max_size=2
    ).map(tuple),
)
events = st.builds(
    Event,
    type=text,
    data=json_values,
    metrics=st.builds(EventMetrics, finite, seconds, seconds, st.integers(0, 10**6)),
)


def through_json(data: dict[str, Any]) -> Any:
    return json.loads(json.dumps(data))


@settings(max_examples=150)
@given(summaries)
def test_a_summary_round_trips_exactly(summary: Summary) -> None:
    assert Summary.from_dict(through_json(summary.to_dict())) == summary


@st.composite
def results(draw: st.DrawFn) -> Result[Any]:
    status = draw(st.sampled_from(list(Status)))
    event_list = tuple(draw(st.lists(events, max_size=3)))
    fields: dict[str, Any] = {"events": event_list}
    if status is Status.SUCCEEDED:
        fields["value"] = draw(json_values)
    else:
        fields["partial"] = Partial(
            draw(text), event_list, tuple(draw(st.lists(st.integers(0, 9))))
        )
    if status is Status.CANCELED:
        fields["cancel"] = CancelInfo(
            draw(st.sampled_from(list(CancelSource))),
            draw(st.one_of(st.none(), text)),
            draw(seconds),
        )
    if status is Status.FAILED:
        fields["error"] = draw(
            st.sampled_from([ValueError("bad"), agtl.ToolLoopError(3, (), ()), KeyError("k")])
        )
    return Result(draw(text), status, draw(summaries), **fields)


@settings(max_examples=150)
@given(results())
def test_a_result_round_trips_exactly(result: Result[Any]) -> None:
    data = through_json(result.to_dict())
    rebuilt = Result.from_dict(data)
    assert rebuilt.to_dict() == result.to_dict()
    if result.error is None:
        assert rebuilt == result  # attrs equality, field by field
    else:
        assert isinstance(rebuilt.error, agtl.RemoteError)
        assert rebuilt.error.type_name == type(result.error).__name__
        assert str(rebuilt.error) == str(result.error)


async def test_a_real_results_record_round_trips() -> None:
    provider = ScriptedProvider(Reply("Hello there", usage=None)).with_pricing(
        {"scripted-model": agtl.Price(input="1", output="2")}
    )

    async def gen(session: agtl.Session) -> Any:
        session.record_cost("search", Decimal("0.002"))
        async with session.stream_text(prompt="hi") as stream:
            async for piece in stream:
                yield session.emit("text", piece)
        yield await session.done({"text": stream.text})

    result = await provider.streaming_execution(gen)
    rebuilt = Result.from_dict(through_json(result.to_dict()))
    assert rebuilt == result
    assert rebuilt.summary.total_cost == result.summary.total_cost
