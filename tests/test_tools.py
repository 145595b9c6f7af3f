"""Tools: definitions, the tool loop, and its cancellation contract, on both hosts.

The scripted provider plays a model that asks for tool calls (``Reply(tool_calls=...)``);
the loop validates them like a real model's. Times are virtual (autojump clock) except for
the sync-tool tests, which run real threads.
"""

from __future__ import annotations

import functools
import json
import threading
from typing import Any

import pydantic
import pytest
import trio

import agtl
from agtl import (
    CancelSource,
    Session,
    Status,
    StopReason,
    Tool,
    ToolCallRequest,
    ToolCallStatus,
    UsageLimits,
    tool,
)
from agtl.testing import Reply, ScriptedProvider
from tests.conftest import Host
from tests.waiting import wait_for, wait_for_thread_event


@tool
async def get_weather(city: str, units: str = "celsius") -> str:
    """Current weather of a city.

    Args:
        city: The city's name.
        units: celsius or fahrenheit.
    """
    return f"sunny in {city}, 21 degrees {units}"


def call(name: str, arguments: Any, id: str = "c1") -> ToolCallRequest:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolCallRequest(id, name, text)


def asks(*calls: ToolCallRequest, text: str = "") -> Reply:
    return Reply(text, tool_calls=calls)


async def ask_weather(session: Session, **kwargs: Any) -> agtl.TextResult:
    return await session.generate_text(
        prompt="What is the weather in Paris?", tools=[get_weather], **kwargs
    )


# -- definitions ---------------------------------------------------------------------------------
def test_a_tool_derives_name_description_and_schema() -> None:
    assert isinstance(get_weather, Tool)
    assert get_weather.name == "get_weather"
    assert get_weather.description == "Current weather of a city."
    schema = get_weather.parameters
    assert schema["required"] == ["city"]
    assert schema["properties"]["city"]["type"] == "string"
    assert schema["properties"]["city"]["description"] == "The city's name."
    assert schema["properties"]["units"]["default"] == "celsius"
    assert schema["additionalProperties"] is False
    assert get_weather.is_async
    assert not get_weather.takes_session


def test_options_and_a_session_parameter() -> None:
    @tool(name="lookup", description="Find a fact.", timeout=2, retries=0)
    def find(session: Session, query: str, limit: int = 3) -> list[str]:
        return [query] * limit

    assert (find.name, find.description, find.timeout, find.retries) == (
        "lookup",
        "Find a fact.",
        2.0,
        0,
    )
    assert find.takes_session
    assert not find.is_async
    assert set(find.parameters["properties"]) == {"query", "limit"}
    assert find.validate('{"query": "x"}') == {"query": "x", "limit": 3}


class _MySession(agtl.Session):
    """A subclass of agtl's Session (a typed helper around it, say)."""


#: A class that merely has Session's name and module string.
_Impostor = type("Session", (), {"__module__": "agtl.session"})


def test_the_session_parameter_is_found_by_type_not_by_name() -> None:
    # A class that merely has Session's name and module string is not the session: it is an
    # argument the model would fill in, and it has no schema.
    def theirs(session: _Impostor, query: str) -> str:  # type: ignore[valid-type]
        """Look something up."""
        return query

    def subclass(session: _MySession, query: str) -> str:
        """Look something up."""
        return query

    def agtls(session: agtl.Session, query: str) -> str:
        """Look something up."""
        return query

    with pytest.raises(agtl.InvalidArgumentError, match="no JSON schema"):
        tool(theirs)
    assert tool(subclass).takes_session
    assert tool(agtls).takes_session
    assert set(tool(agtls).parameters["properties"]) == {"query"}


def _no_hint(city):  # type: ignore[no-untyped-def]
    """Doc."""


def _no_doc(city: str) -> None:
    pass


def _star(*cities: str) -> None:
    """Doc."""


def _lock(lock: threading.Lock) -> None:
    """Doc."""


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (_no_hint, "has no type hint"),
        (_no_doc, "has no docstring"),
        (_star, "*args and **kwargs"),
        (_lock, "has no JSON schema"),
        (lambda x: x, "a tool name is"),
        (42, "must be a function"),
    ],
)
def test_bad_definitions_fail_at_definition_time(fn: Any, message: str) -> None:
    with pytest.raises(agtl.InvalidArgumentError, match=message.replace("*", r"\*")):
        tool(fn)


def test_bad_options_and_duplicate_names_fail_at_the_call() -> None:
    with pytest.raises(agtl.InvalidArgumentError, match="timeout"):
        tool(timeout=-1)
    with pytest.raises(agtl.InvalidArgumentError, match="name"):
        tool(name="has space")

    async def run(session: Session) -> None:
        await session.generate_text(prompt="hi", tools=[get_weather, get_weather])

    provider = ScriptedProvider("unused")
    result = trio.run(provider.simple_execution(run).result)
    assert isinstance(result.error, agtl.InvalidArgumentError)
    assert "a second tool named 'get_weather'" in str(result.error)
    assert provider.calls == ()


async def test_arguments_are_validated_with_a_message_for_the_model() -> None:
    with pytest.raises(agtl.ToolArgumentsError, match="city: Input should be a valid string"):
        get_weather.validate('{"city": 3}')
    with pytest.raises(agtl.ToolArgumentsError, match="not valid JSON"):
        get_weather.validate("{city")
    with pytest.raises(agtl.ToolArgumentsError, match="town: Extra inputs"):
        get_weather.validate({"city": "Paris", "town": "x"})


# -- the loop ------------------------------------------------------------------------------------
async def test_the_model_calls_a_tool_and_answers(autojump_clock: trio.abc.Clock) -> None:
    provider = ScriptedProvider(
        asks(call("get_weather", {"city": "Paris"})), Reply("It is sunny in Paris.")
    )
    result = await provider.simple_execution(ask_weather).result()
    reply = result.unwrap()
    assert reply.text == "It is sunny in Paris."
    assert [s.call_index for s in reply.steps] == [0, 1]
    first = reply.steps[0]
    assert first.stop_reason is StopReason.TOOL_CALLS
    [record] = first.tool_calls
    assert (record.name, record.status, record.call_id, record.step) == (
        "get_weather",
        ToolCallStatus.OK,
        "c1",
        0,
    )
    assert record.arguments == {"city": "Paris", "units": "celsius"}
    assert record.result == "sunny in Paris, 21 degrees celsius"
    # the second model call saw the assistant's call and the tool's result
    second = provider.calls[1]
    assert [m.role.value for m in second.messages] == ["user", "assistant", "tool"]
    assert second.messages[1].tool_calls == (call("get_weather", {"city": "Paris"}),)
    assert second.messages[2].tool_call_id == "c1"
    assert second.messages[2].content == "sunny in Paris, 21 degrees celsius"
    assert provider.calls[0].tools[0].name == "get_weather"
    # the summary: one LLM-call record per step, and the tool call
    summary = result.summary
    assert summary.llm_call_count == 2
    assert summary.llm_calls[0].stop_reason is StopReason.TOOL_CALLS
    assert summary.tool_calls == (record,)


async def test_calls_of_one_step_run_concurrently(autojump_clock: trio.abc.Clock) -> None:
    @tool
    async def slow(seconds: float) -> str:
        """Wait."""
        await trio.sleep(seconds)
        return "done"

    provider = ScriptedProvider(
        asks(call("slow", {"seconds": 5}, "a"), call("slow", {"seconds": 5}, "b")),
        Reply("both done"),
    )

    async def run(session: Session) -> float:
        start = trio.current_time()
        await session.generate_text(prompt="go", tools=[slow])
        return trio.current_time() - start

    took = (await provider.simple_execution(run).result()).unwrap()
    assert took == pytest.approx(5.0)  # not 10: the two calls ran at once


async def test_tool_choice_goes_to_the_first_call_then_auto(
    autojump_clock: trio.abc.Clock,
) -> None:
    provider = ScriptedProvider(asks(call("get_weather", {"city": "Oslo"})), Reply("Cold."))
    await provider.simple_execution(lambda s: ask_weather(s, tool_choice="get_weather")).result()
    assert [r.tool_choice for r in provider.calls] == ["get_weather", "auto"]


@pytest.mark.parametrize(
    ("choice", "message"),
    [("sometimes", "not 'auto', 'required', 'none'"), (3, "must be a str")],
)
async def test_a_bad_tool_choice_is_refused(choice: Any, message: str) -> None:
    provider = ScriptedProvider("unused")
    result = await provider.simple_execution(lambda s: ask_weather(s, tool_choice=choice)).result()
    assert isinstance(result.error, agtl.InvalidArgumentError)
    assert message in str(result.error)
    assert provider.calls == ()  # refused before any model call


async def test_a_tool_error_is_told_to_the_model_or_raised(
    autojump_clock: trio.abc.Clock,
) -> None:
    @tool
    async def broken(x: int) -> int:
        """Fails."""
        raise ValueError("no such thing")

    def provider() -> ScriptedProvider:
        return ScriptedProvider(asks(call("broken", {"x": 1})), Reply("Sorry."))

    async def run(session: Session, **kwargs: Any) -> agtl.TextResult:
        return await session.generate_text(prompt="go", tools=[broken], **kwargs)

    told = provider()
    reply = (await told.simple_execution(run).result()).unwrap()
    record = reply.steps[0].tool_calls[0]
    assert record.status is ToolCallStatus.ERROR
    assert record.error == "ValueError: no such thing"
    assert told.calls[1].messages[-1].content == "Error: ValueError: no such thing"

    raised = await provider().simple_execution(lambda s: run(s, tool_errors="raise")).result()
    assert raised.status is Status.FAILED
    assert isinstance(raised.error, agtl.ToolError)
    assert isinstance(raised.error.__cause__, ValueError)
    assert raised.summary.tool_calls[0].status is ToolCallStatus.ERROR


async def test_a_tool_timeout_is_told_to_the_model(autojump_clock: trio.abc.Clock) -> None:
    @tool(timeout=2)
    async def sleepy() -> str:
        """Takes long."""
        await trio.sleep(60)
        return "late"

    provider = ScriptedProvider(asks(call("sleepy", {})), Reply("It timed out."))
    reply = (
        await provider.simple_execution(
            lambda s: s.generate_text(prompt="go", tools=[sleepy])
        ).result()
    ).unwrap()
    record = reply.steps[0].tool_calls[0]
    assert record.status is ToolCallStatus.TIMEOUT
    assert record.duration == pytest.approx(2.0)
    assert "did not finish within its timeout of 2s" in provider.calls[1].messages[-1].content


async def test_invalid_arguments_go_back_to_the_model_then_fail(
    autojump_clock: trio.abc.Clock,
) -> None:
    fixed = ScriptedProvider(
        asks(call("get_weather", {"town": "Paris"})),
        asks(call("get_weather", {"city": "Paris"}, "c2")),
        Reply("Sunny."),
    )
    reply = (await fixed.simple_execution(ask_weather).result()).unwrap()
    assert [s.tool_calls[0].status for s in reply.steps[:2]] == [
        ToolCallStatus.INVALID,
        ToolCallStatus.OK,
    ]
    told = fixed.calls[1].messages[-1].content
    assert told.startswith("Error: invalid call: city: Field required")
    assert "Call it again with valid arguments." in told

    stubborn = ScriptedProvider(respond=lambda r: asks(call("get_weather", "not json")))
    result = await stubborn.simple_execution(ask_weather).result()
    assert isinstance(result.error, agtl.ToolArgumentsError)
    assert "still invalid after 2 retries" in str(result.error)
    assert len(stubborn.calls) == 3  # the first try and two retries


async def test_an_unknown_tool_name_is_told_to_the_model(autojump_clock: trio.abc.Clock) -> None:
    provider = ScriptedProvider(
        asks(call("get_wether", {"city": "Paris"})),
        asks(call("get_weather", {"city": "Paris"}, "c2")),
        Reply("Sunny."),
    )
    reply = (await provider.simple_execution(ask_weather).result()).unwrap()
    assert reply.steps[0].tool_calls[0].status is ToolCallStatus.INVALID
    assert "there is no tool named 'get_wether'" in provider.calls[1].messages[-1].content


async def test_max_steps_is_a_typed_outcome_with_everything_in_the_summary(
    autojump_clock: trio.abc.Clock,
) -> None:
    provider = ScriptedProvider(
        respond=lambda r: asks(call("get_weather", {"city": "Paris"}, f"c{len(r.messages)}"))
    )
    result = await provider.simple_execution(lambda s: ask_weather(s, max_steps=3)).result()
    assert result.status is Status.FAILED
    error = result.error
    assert isinstance(error, agtl.ToolLoopError)
    assert error.max_steps == 3
    assert len(error.steps) == 3
    assert [c.name for c in error.pending] == ["get_weather"]
    assert result.summary.llm_call_count == 3
    assert len(result.summary.tool_calls) == 2  # the last step's call was not run


async def test_on_max_steps_answer_asks_the_model_to_answer_without_tools(
    autojump_clock: trio.abc.Clock,
) -> None:
    def respond(request: agtl.GenerationRequest) -> Reply:
        if request.tool_choice == "none":  # the last call: answer in text
            return Reply("Sunny, as far as I can tell.")
        return asks(call("get_weather", {"city": "Paris"}, f"c{len(request.messages)}"))

    provider = ScriptedProvider(respond=respond)
    result = await provider.simple_execution(
        lambda s: ask_weather(s, max_steps=3, on_max_steps="answer")
    ).result()
    reply = result.unwrap()
    assert reply.text == "Sunny, as far as I can tell."
    assert len(reply.steps) == 4  # three that asked for tools, and the answer
    assert result.summary.llm_call_count == 4
    assert len(result.summary.tool_calls) == 2  # the third step's call was not run
    last = provider.calls[-1]
    assert last.tool_choice == "none"
    assert last.messages[-1].content == agtl.MAX_STEPS_PROMPT
    assert last.messages[-2].content == "Not run: the tool call limit was reached."
    # The prompt can be replaced; it needs on_max_steps="answer", and tools.
    custom = await provider.simple_execution(
        lambda s: ask_weather(s, max_steps=1, on_max_steps="answer", max_steps_prompt="Answer now.")
    ).result()
    assert custom.succeeded
    assert provider.calls[-1].messages[-1].content == "Answer now."
    wrong: list[tuple[dict[str, Any], str]] = [
        ({"on_max_steps": "guess"}, "must be 'raise' or 'answer'"),
        ({"max_steps_prompt": "Answer."}, "needs on_max_steps='answer'"),
    ]
    for bad, message in wrong:
        refused = await provider.simple_execution(functools.partial(ask_weather, **bad)).result()
        assert isinstance(refused.error, agtl.InvalidArgumentError)
        assert message in str(refused.error)


async def test_a_tool_may_use_the_session(autojump_clock: trio.abc.Clock) -> None:
    @tool
    async def search(session: Session, query: str) -> str:
        """Search the web."""
        session.record_cost("search API", "0.002", {"query": query})
        return "found it"

    provider = ScriptedProvider(asks(call("search", {"query": "trio"})), Reply("Here."))
    result = await provider.simple_execution(
        lambda s: s.generate_text(prompt="go", tools=[search])
    ).result()
    assert result.succeeded
    assert [c.label for c in result.summary.additional_costs] == ["search API"]


async def test_a_tool_that_decides_the_execution_stops_the_loop(
    autojump_clock: trio.abc.Clock,
) -> None:
    @tool
    async def finish(session: Session, answer: str) -> str:
        """Give the final answer."""
        await session.done(answer)
        return "ok"

    provider = ScriptedProvider(asks(call("finish", {"answer": "42"})), Reply("never asked"))

    async def gen(session: Session) -> Any:
        await session.generate_text(prompt="go", tools=[finish])
        yield session.emit("after", "never")

    result = await provider.streaming_execution(gen).result()
    assert result.status is Status.SUCCEEDED
    assert result.value == "42"
    assert len(provider.calls) == 1  # auto-abort: no model call after the terminal event


# -- cancellation --------------------------------------------------------------------------------
async def test_a_cancel_stops_every_running_tool_and_records_them(
    host: Host, autojump_clock: trio.abc.Clock
) -> None:
    started = trio.Event()
    cleaned: list[str] = []

    @tool
    async def long_job(name: str) -> str:
        """A long job."""
        try:
            started.set()
            await trio.sleep_forever()
        finally:
            cleaned.append(name)
        return "unreachable"

    provider = ScriptedProvider(
        asks(call("long_job", {"name": "a"}, "a"), call("long_job", {"name": "b"}, "b"))
    )

    async def body(session: Session) -> str:
        return (await session.generate_text(prompt="go", tools=[long_job])).text

    baseline = trio.lowlevel.current_statistics().tasks_living
    execution = host.execution(provider, body)
    async with execution:
        await started.wait()
        execution.cancel("user pressed stop")
        result = await execution.result()
    assert result.status is Status.CANCELED
    assert result.cancel is not None
    assert result.cancel.source is CancelSource.HANDLE
    assert sorted(cleaned) == ["a", "b"]  # every tool's finally ran
    statuses = {c.call_id: c.status for c in result.summary.tool_calls}
    assert statuses == {"a": ToolCallStatus.CANCELLED, "b": ToolCallStatus.CANCELLED}
    assert result.summary.llm_call_count == 1
    assert trio.lowlevel.current_statistics().tasks_living == baseline


@pytest.mark.parametrize("mechanism", ["timeout", "signal", "enclosing"])
async def test_every_cancel_source_reaches_a_running_tool(
    host: Host, mechanism: str, autojump_clock: trio.abc.Clock
) -> None:
    @tool
    async def wait_forever() -> str:
        """Never returns."""
        await trio.sleep_forever()
        return ""

    provider = ScriptedProvider(asks(call("wait_forever", {})))
    signal = agtl.CancelSignal.after(3.0, reason="page closed")
    kwargs: dict[str, Any] = {}
    if mechanism == "timeout":
        kwargs["timeout"] = 3.0
    elif mechanism == "signal":
        kwargs["signal"] = signal
    execution = host.execution(
        provider,
        lambda s: s.generate_text(prompt="go", tools=[wait_forever]),
        **kwargs,
    )
    with trio.move_on_after(3.0) as outer:
        if mechanism != "enclosing":
            outer.deadline = float("inf")
        await execution.result()
    result = execution.outcome
    assert result is not None
    assert result.status is Status.CANCELED
    expected = {
        "timeout": CancelSource.TIMEOUT,
        "signal": CancelSource.SIGNAL,
        "enclosing": CancelSource.ENCLOSING_SCOPE,
    }[mechanism]
    assert result.cancel is not None
    assert result.cancel.source is expected
    assert result.summary.tool_calls[0].status is ToolCallStatus.CANCELLED
    assert result.summary.tool_calls[0].duration == pytest.approx(3.0)


async def test_max_tool_calls_cancels_with_source_limit(
    host: Host, autojump_clock: trio.abc.Clock
) -> None:
    provider = ScriptedProvider(
        respond=lambda r: asks(call("get_weather", {"city": "Paris"}, f"c{len(r.messages)}"))
    )
    result = await host.execution(
        provider, ask_weather, limits=UsageLimits(max_tool_calls=2)
    ).result()
    assert result.status is Status.CANCELED
    assert result.cancel is not None
    assert result.cancel.source is CancelSource.LIMIT
    assert result.cancel.reason == "max_tool_calls=2 reached"
    assert len(result.summary.tool_calls) == 2  # the third was never started


async def test_a_sync_tool_runs_in_a_thread_that_is_joined() -> None:
    names: list[str] = []

    @tool
    def blocking(x: int) -> int:
        """Blocks a little."""
        names.append(threading.current_thread().name)
        return x * 2

    provider = ScriptedProvider(asks(call("blocking", {"x": 21})), Reply("42"))
    result = await provider.simple_execution(
        lambda s: s.generate_text(prompt="go", tools=[blocking])
    ).result()
    assert result.unwrap().steps[0].tool_calls[0].result == 42
    assert names == ["agtl-tool-blocking"]
    assert not [t for t in threading.enumerate() if t.name.startswith("agtl-tool-")]


async def test_a_cancelled_sync_tool_is_waited_for_a_bounded_grace_then_reported() -> None:
    release = threading.Event()
    running = threading.Event()

    @tool
    def stuck() -> str:
        """Blocks until released."""
        running.set()
        release.wait(30)
        return "released"

    provider = ScriptedProvider(asks(call("stuck", {})))
    try:
        async with provider.simple_execution(
            lambda s: s.generate_text(prompt="go", tools=[stuck])
        ) as execution:
            await wait_for_thread_event(running, "the sync tool starting")
            start = trio.current_time()
            execution.cancel("stop")
            result = await execution.result()
        took = trio.current_time() - start
        assert result.status is Status.CANCELED
        record = result.summary.tool_calls[0]
        assert record.status is ToolCallStatus.CANCELLED
        assert record.error is not None
        assert "its thread was still running 1s after the stop" in record.error
        assert 0.9 <= took < 5  # the grace, not the tool's 30 s
    finally:
        release.set()
    thread_gone = trio.Event()

    async def join() -> None:
        for t in threading.enumerate():
            if t.name.startswith("agtl-tool-"):
                await trio.to_thread.run_sync(t.join, 10)
        thread_gone.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(join)
        await wait_for(thread_gone, "the released tool thread ending")


# -- typed output --------------------------------------------------------------------------------
class City(pydantic.BaseModel):
    name: str
    population: int


async def test_generate_object_validates_into_the_type(autojump_clock: trio.abc.Clock) -> None:
    provider = ScriptedProvider(Reply('{"name": "Paris", "population": 2100000}'))
    result = await provider.simple_execution(
        lambda s: s.generate_object(output_type=City, prompt="Describe Paris.")
    ).result()
    assert result.unwrap() == City(name="Paris", population=2100000)
    fmt = provider.calls[0].options.response_format
    assert fmt is not None
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["schema"]["required"] == ["name", "population"]


async def test_invalid_output_goes_back_then_fails_typed(autojump_clock: trio.abc.Clock) -> None:
    fixed = ScriptedProvider(
        Reply('{"name": "Paris"}'), Reply('{"name": "Paris", "population": 1}')
    )
    result = await fixed.simple_execution(
        lambda s: s.generate_object(output_type=City, prompt="Describe Paris.")
    ).result()
    assert result.unwrap().population == 1
    told = fixed.calls[1].messages[-1].content
    assert told.startswith("That reply is not valid: population: Field required")
    assert result.summary.llm_call_count == 2
    assert [r.kind for r in result.summary.records] == ["generate_object.invalid"]

    stubborn = ScriptedProvider(respond=lambda r: Reply("not json"))
    failed = await stubborn.simple_execution(
        lambda s: s.generate_object(output_type=list[int], prompt="Numbers.", retries=1)
    ).result()
    assert isinstance(failed.error, agtl.OutputValidationError)
    assert failed.error.attempts == 2
    assert failed.summary.llm_call_count == 2


async def test_generate_object_refuses_what_cannot_work() -> None:
    provider = ScriptedProvider("unused")
    for kwargs, message in [
        ({"output_type": threading.Lock}, "has no JSON schema"),
        ({"output_type": int, "response_format": {"type": "text"}}, "sets it from output_type"),
        ({"output_type": int, "retries": -1}, "retries"),
    ]:
        result = await provider.simple_execution(
            lambda s, kw=kwargs: s.generate_object(prompt="x", **kw)  # type: ignore[misc]
        ).result()
        assert isinstance(result.error, agtl.InvalidArgumentError), result
        assert message in str(result.error)
    assert provider.calls == ()


# -- conversations -------------------------------------------------------------------------------
async def test_tool_calls_and_results_are_kept_in_the_conversation(
    autojump_clock: trio.abc.Clock,
) -> None:
    conversation = agtl.Conversation(system="You are a helpful assistant.")
    provider = ScriptedProvider(
        asks(call("get_weather", {"city": "Paris"})),
        Reply("It is sunny in Paris."),
        Reply("You are welcome."),
    )

    async def turn(session: Session, prompt: str) -> str:
        reply = await session.generate_text(
            conversation=conversation, prompt=prompt, tools=[get_weather]
        )
        return reply.text

    await provider.simple_execution(lambda s: turn(s, "Weather in Paris?")).result()
    roles = [e.role.value for e in conversation.entries]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    assert conversation.entries[2].tool_calls == (call("get_weather", {"city": "Paris"}),)
    assert conversation.entries[3].tool_call_id == "c1"
    # the next turn sends the whole history back, calls and results included
    await provider.simple_execution(lambda s: turn(s, "Thanks!")).result()
    sent = provider.calls[2].messages
    assert [m.role.value for m in sent] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]
    assert sent[2].tool_calls[0].id == sent[3].tool_call_id == "c1"


async def test_a_turn_stopped_while_tools_run_keeps_the_history_sendable(
    autojump_clock: trio.abc.Clock,
) -> None:
    started = trio.Event()

    @tool
    async def slow(city: str) -> str:
        """Slow."""
        started.set()
        await trio.sleep_forever()
        return ""

    conversation = agtl.Conversation()
    provider = ScriptedProvider(asks(call("slow", {"city": "Paris"})))
    async with provider.simple_execution(
        lambda s: s.generate_text(conversation=conversation, prompt="go", tools=[slow])
    ) as execution:
        await started.wait()
        execution.cancel("user pressed stop")
    assert [m.reason for m in conversation.markers] == ["user pressed stop"]
    # the unanswered call is not sent to the model again
    assert [m.role.value for m in conversation.to_model_messages()] == ["user"]


# -- streaming the loop --------------------------------------------------------------------------
async def test_stream_text_with_tools_streams_every_step_and_its_tool_calls(
    autojump_clock: trio.abc.Clock,
) -> None:
    provider = ScriptedProvider(
        asks(call("get_weather", {"city": "Paris"}), text="Let me check."),
        Reply("It is sunny in Paris."),
    )

    async def gen(session: Session) -> Any:
        async with session.stream_text(prompt="Weather?", tools=[get_weather]) as stream:
            async for part in stream.parts():
                # One line forwards every part to the execution's consumers.
                yield session.emit(type(part).__name__, part)
        yield await session.done(stream.result.text)

    seen: list[tuple[str, Any]] = []
    async with provider.streaming_execution(gen) as execution:
        async for event in execution.stream():
            seen.append((event.type, event.data))
    result = execution.outcome
    assert result is not None
    assert result.value == "It is sunny in Paris."
    kinds = [kind for kind, _ in seen]
    started = kinds.index("ToolCallStarted")
    finished = kinds.index("ToolCallFinished")
    assert kinds[:started] == ["TextPart"] * started  # the first step's text came first
    assert started < finished
    assert seen[finished][1].call.status is ToolCallStatus.OK
    text = "".join(data.text for kind, data in seen if kind == "TextPart")
    assert text == "Let me check.It is sunny in Paris."
    assert kinds[-1] == "complete"


async def test_iterating_a_tool_loop_stream_gives_text_only(
    autojump_clock: trio.abc.Clock,
) -> None:
    provider = ScriptedProvider(
        asks(call("get_weather", {"city": "Paris"})), Reply("Sunny in Paris.")
    )

    async def run(session: Session) -> str:
        async with session.stream_text(prompt="Weather?", tools=[get_weather]) as stream:
            deltas = [delta async for delta in stream]
        assert stream.result.steps[0].tool_calls[0].status is ToolCallStatus.OK
        return "".join(deltas)

    assert (await provider.simple_execution(run).result()).unwrap() == "Sunny in Paris."


async def test_leaving_a_tool_loop_stream_early_stops_the_call(
    autojump_clock: trio.abc.Clock,
) -> None:
    provider = ScriptedProvider(Reply("one two three four five", delay=1))

    async def run(session: Session) -> str:
        async with session.stream_text(prompt="Count", tools=[get_weather]) as stream:
            async for delta in stream:
                return delta
        return ""

    result = await provider.simple_execution(run).result()
    assert result.value == "one "
    assert result.summary.llm_calls[0].stop_reason is StopReason.CANCELLED


async def test_tool_options_without_tools_are_refused() -> None:
    provider = ScriptedProvider("unused")
    result = await provider.simple_execution(
        lambda s: s.generate_text(prompt="x", tool_errors="raise")
    ).result()
    assert isinstance(result.error, agtl.InvalidArgumentError)

    async def stream(session: Session) -> None:
        session.stream_text(prompt="x", max_steps=3)

    refused = await provider.simple_execution(stream).result()
    assert isinstance(refused.error, agtl.InvalidArgumentError)
    assert "need tools=" in str(refused.error)


async def test_a_tool_from_a_schema_of_elsewhere() -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}

    def needs_q(arguments: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(arguments.get("q"), str):
            raise ValueError("q: a string is required")
        return arguments

    async def search(q: str) -> str:
        await trio.lowlevel.checkpoint()
        return f"found {q}"

    checked = agtl.Tool.from_schema("search", "Search.", schema, search, check=needs_q)
    assert checked.spec.parameters == schema
    assert checked.validate('{"q": "trio"}') == {"q": "trio"}
    with pytest.raises(agtl.ToolArgumentsError, match="q: a string is required"):
        checked.validate('{"q": 3}')
    unchecked = agtl.Tool.from_schema("search", "Search.", schema, search)
    assert unchecked.validate('{"anything": 1}') == {"anything": 1}  # for the function to judge
    with pytest.raises(agtl.InvalidArgumentError, match="a tool name"):
        agtl.Tool.from_schema("a.b/c", "Bad name.", schema, search)
    provider = ScriptedProvider(
        Reply(tool_calls=[agtl.ToolCallRequest("c1", "search", '{"q": "nurseries"}')]), "Done."
    )

    async def agent(session: Session) -> str:
        return (await session.generate_text(prompt="go", tools=[checked])).text

    result = await provider.simple_execution(agent)
    assert result.summary.tool_calls[0].result == "found nurseries"


@agtl.tool
async def crawl(pages: int) -> int:
    """Crawl some pages, reporting each.

    Args:
        pages: How many.
    """
    for page in range(pages):
        await trio.lowlevel.checkpoint()
        agtl.report_progress(page + 1, pages, f"page {page + 1}")
    return pages


@agtl.tool
def crawl_blocking(pages: int) -> int:
    """Crawl some pages in a thread, reporting each.

    Args:
        pages: How many.
    """
    for page in range(pages):
        agtl.report_progress(page + 1, pages)
    return pages


@pytest.mark.parametrize("tool_name", ["crawl", "crawl_blocking"])
async def test_tool_progress_streams_as_parts_and_is_recorded(tool_name: str) -> None:
    call = agtl.ToolCallRequest("c1", tool_name, '{"pages": 3}')
    provider = ScriptedProvider(Reply(tool_calls=[call]), "Crawled.")

    async def gen(session: Session) -> Any:
        async with session.stream_text(prompt="go", tools=[crawl, crawl_blocking]) as loop:
            async for part in loop.parts():
                if isinstance(part, agtl.ToolProgress):
                    yield session.emit("progress", (part.name, part.progress, part.total))
        yield await session.done(loop.text)

    result = await provider.streaming_execution(gen)
    assert result.status is Status.SUCCEEDED
    progress = [e.data for e in result.events if e.type == "progress"]
    assert progress == [(tool_name, float(n), 3.0) for n in (1, 2, 3)]
    records = [r.data for r in result.summary.records if r.kind == "tool.progress"]
    assert [(r["tool"], r["call_id"], r["progress"]) for r in records] == [
        (tool_name, "c1", float(n)) for n in (1, 2, 3)
    ]
    agtl.report_progress(1)  # outside a tool call: nothing happens


async def test_leaving_a_tool_loop_stream_early_cancels_its_running_tools() -> None:
    started = trio.Event()

    @agtl.tool
    async def forever(name: str) -> str:
        """Wait forever, reporting once.

        Args:
            name: A name.
        """
        agtl.report_progress(0)
        started.set()
        await trio.sleep_forever()
        return name

    call = agtl.ToolCallRequest("c1", "forever", '{"name": "x"}')
    provider = ScriptedProvider(Reply(tool_calls=[call]), "never")

    async def reads_one(session: Session) -> str:
        async with session.stream_text(prompt="go", tools=[forever]) as loop:
            async for part in loop.parts():
                if isinstance(part, agtl.ToolProgress):
                    break  # leave while the tool runs
        return "left"

    with trio.fail_after(10):
        result = await provider.simple_execution(reads_one)
    assert result.value == "left"
    assert [c.status for c in result.summary.tool_calls] == [ToolCallStatus.CANCELLED]


async def test_tool_choice_each_forces_every_tool_once_then_asks_for_the_answer() -> None:
    @agtl.tool
    async def weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    @agtl.tool
    async def population(city: str) -> int:
        """How many people live in a city."""
        return 2_100_000

    def respond(request: agtl.GenerationRequest) -> Reply:
        choice = request.tool_choice
        if choice in ("weather", "population"):
            return Reply(
                "", tool_calls=[agtl.ToolCallRequest(f"c-{choice}", choice, {"city": "Paris"})]
            )
        return Reply("Sunny; 2.1 million people.")

    provider = ScriptedProvider(respond=respond)

    async def workflow(session: Session) -> str:
        reply = await session.generate_text(
            prompt="Paris?", tools=[weather, population], tool_choice="each"
        )
        return reply.text

    result = await provider.simple_execution(workflow)
    assert result.value == "Sunny; 2.1 million people."
    assert [r.tool_choice for r in provider.calls] == ["weather", "population", "none"]
    assert [(c.name, c.status.value) for c in result.summary.tool_calls] == [
        ("weather", "ok"),
        ("population", "ok"),
    ]


async def test_generate_object_refuses_tools_saying_what_to_do() -> None:
    @agtl.tool
    async def lookup(city: str) -> str:
        """Look a city up."""
        return city

    class City(pydantic.BaseModel):
        name: str

    async def workflow(session: Session) -> Any:
        return await session.generate_object(output_type=City, prompt="x", tools=[lookup])

    result = await ScriptedProvider('{"name": "x"}').simple_execution(workflow)
    assert isinstance(result.error, agtl.InvalidArgumentError)
    assert "tools: generate_object runs no tools" in str(result.error)
    assert "generate_text(tools=...)" in str(result.error)
    assert result.summary.llm_call_count == 0


async def test_result_format_says_how_it_ended_and_lists_tool_calls() -> None:
    @agtl.tool
    async def double(x: int) -> int:
        """Twice x."""
        return 2 * x

    provider = ScriptedProvider(
        Reply("", tool_calls=[agtl.ToolCallRequest("c1", "double", {"x": 2})]), Reply("four")
    )

    async def workflow(session: Session) -> str:
        return (await session.generate_text(prompt="go", tools=[double])).text

    done = await provider.simple_execution(workflow)
    report = done.format()
    assert report.splitlines()[0] == "succeeded"
    assert "    double ok " in report
    cancelled = ScriptedProvider(Reply("x", hang=True)).simple_execution(workflow)
    cancelled.cancel("the user left")
    assert (await cancelled).format().splitlines()[0] == "canceled by handle (the user left)"
