"""Bad arguments give a clear agtl error at the call, naming the argument."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import agtl
from agtl import Event, Session, UsageLimits
from agtl.testing import ScriptedProvider


async def coroutine_fn(session: Session) -> None:
    return None


async def generator_fn(session: Session) -> AsyncIterator[Event]:
    yield await session.done(None)


def sync_fn(session: Session) -> None:
    return None


# Typed as Any on purpose: these tests pass what the type checker would refuse.
provider: Any = ScriptedProvider()
Limits: Any = UsageLimits

EXECUTION_CASES: list[tuple[str, Callable[[], object], str]] = [
    ("generator to simple", lambda: provider.simple_execution(generator_fn), "fn"),
    ("coroutine to streaming", lambda: provider.streaming_execution(coroutine_fn), "gen"),
    ("sync function", lambda: provider.simple_execution(sync_fn), "fn"),
    ("not callable", lambda: provider.simple_execution("fn"), "fn"),
    ("negative timeout", lambda: provider.simple_execution(coroutine_fn, timeout=-1), "timeout"),
    (
        "nan timeout",
        lambda: provider.simple_execution(coroutine_fn, timeout=float("nan")),
        "timeout",
    ),
    ("bool timeout", lambda: provider.simple_execution(coroutine_fn, timeout=True), "timeout"),
    ("bad signal", lambda: provider.simple_execution(coroutine_fn, signal="x"), "signal"),
    ("bad signal item", lambda: provider.simple_execution(coroutine_fn, signal=[1]), "signal[0]"),
    (
        "bad limits",
        lambda: provider.simple_execution(coroutine_fn, limits={"max_requests": 1}),
        "limits",
    ),
    (
        "buffer zero",
        lambda: provider.streaming_execution(generator_fn, buffer_size=0),
        "buffer_size",
    ),
    ("negative limit", lambda: Limits(max_requests=-1), "max_requests"),
    ("float limit", lambda: Limits(max_output_tokens=1.5), "max_output_tokens"),
    ("bad cost limit", lambda: Limits(max_cost="lots"), "max_cost"),
    ("unknown option", lambda: provider.with_default_options(temprature=0.1), "temprature"),
    ("bad temperature", lambda: provider.with_default_options(temperature=9), "temperature"),
    ("bad max_tokens", lambda: provider.with_default_options(max_tokens=0), "max_tokens"),
    ("bad stop", lambda: provider.with_default_options(stop=[""]), "stop"),
    (
        "bad response_format",
        lambda: provider.with_default_options(response_format="json"),
        "response_format",
    ),
    ("empty model", lambda: provider.with_default_model(""), "name"),
    ("bad logger", lambda: provider.with_logger(print), "logger"),
    ("bad price", lambda: provider.with_pricing({"m": 3}), "prices['m']"),
    ("cancel reason", lambda: provider.simple_execution(coroutine_fn).cancel(5), "reason"),
]


@pytest.mark.parametrize(
    ("call", "argument"),
    [(c, a) for _, c, a in EXECUTION_CASES],
    ids=[n for n, _, _ in EXECUTION_CASES],
)
def test_bad_arguments_are_refused_at_the_call(call: Callable[[], object], argument: str) -> None:
    with pytest.raises(agtl.InvalidArgumentError) as info:
        call()
    assert info.value.argument == argument
    assert str(info.value).startswith(f"{argument}: ")


def test_unknown_option_suggests_the_close_name() -> None:
    with pytest.raises(agtl.InvalidArgumentError, match="did you mean 'temperature'"):
        provider.with_default_options(temprature=0.1)


async def test_lambdas_returning_coroutines_are_accepted() -> None:
    ran: list[Session] = []

    async def workflow(session: Session) -> str:
        ran.append(session)
        return "ran"

    result = await ScriptedProvider().simple_execution(lambda session: workflow(session)).result()
    assert result.status is agtl.Status.SUCCEEDED
    assert result.value == "ran"
    assert len(ran) == 1


CALL_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("no prompt", {}, "prompt/messages"),
    ("both", {"prompt": "a", "messages": [{"role": "user", "content": "b"}]}, "prompt/messages"),
    ("empty prompt", {"prompt": "   "}, "prompt"),
    ("prompt not str", {"prompt": 42}, "prompt"),
    ("messages str", {"messages": "hello"}, "messages"),
    ("bad role", {"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ("missing content", {"messages": [{"role": "user"}]}, "messages[0]"),
    ("only system", {"messages": [{"role": "system", "content": "x"}]}, "messages"),
    ("bad timeout", {"prompt": "x", "timeout": -2}, "timeout"),
    ("bad stall", {"prompt": "x", "stall_timeout": "1"}, "stall_timeout"),
    ("unknown option", {"prompt": "x", "max_token": 3}, "max_token"),
    ("bad model", {"prompt": "x", "model": ""}, "model"),
    ("bad system", {"prompt": "x", "system": 1}, "system"),
]


@pytest.mark.parametrize(
    ("kwargs", "argument"), [(k, a) for _, k, a in CALL_CASES], ids=[n for n, _, _ in CALL_CASES]
)
async def test_bad_call_arguments_raise_inside_the_workflow(
    kwargs: dict[str, Any], argument: str
) -> None:
    scripted = ScriptedProvider("unused")

    async def fn(session: Session) -> None:
        await session.generate_text(**kwargs)

    result = await scripted.simple_execution(fn).result()
    assert result.status is agtl.Status.FAILED
    assert isinstance(result.error, agtl.InvalidArgumentError)
    assert result.error.argument == argument
    assert scripted.calls == ()  # nothing reached the provider


async def test_session_record_arguments_are_checked() -> None:
    async def fn(session: Session) -> None:
        with pytest.raises(agtl.InvalidArgumentError, match="amount"):
            session.record_cost("search", -1)
        with pytest.raises(agtl.InvalidArgumentError, match="label"):
            session.record_cost("", 1)
        with pytest.raises(agtl.InvalidArgumentError, match="callback"):
            session.on_done("not callable")  # type: ignore[arg-type]
        with pytest.raises(agtl.InvalidArgumentError, match="error"):
            await session.fail(42)  # type: ignore[arg-type]
        with pytest.raises(agtl.InvalidArgumentError, match="type"):
            session.emit("")

    result = await ScriptedProvider().simple_execution(fn).result()
    assert result.status is agtl.Status.SUCCEEDED


async def test_stream_text_must_be_entered() -> None:
    async def fn(session: Session) -> None:
        stream = session.stream_text(prompt="x")
        with pytest.raises(agtl.ExecutionClosedError, match="async with"):
            async for _ in stream:
                pass
        with pytest.raises(agtl.ExecutionClosedError, match="only available after"):
            _ = stream.result

    result = await ScriptedProvider().simple_execution(fn).result()
    assert result.status is agtl.Status.SUCCEEDED


async def test_missing_model_is_explained() -> None:
    class NoModel(ScriptedProvider):
        def _builtin_model(self) -> None:
            return None

    async def fn(session: Session) -> None:
        await session.generate_text(prompt="x")

    result = await NoModel("x").simple_execution(fn).result()
    assert isinstance(result.error, agtl.InvalidArgumentError)
    assert "with_default_model" in str(result.error)
