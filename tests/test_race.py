"""agtl.race: first success wins, the others are cancelled."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import agtl
from agtl import CancelSource, Session, Status
from agtl.testing import Reply, ScriptedProvider


def answer_execution(provider: agtl.Provider) -> agtl.SimpleExecution[str]:
    async def fn(session: Session) -> str:
        return (await session.generate_text(prompt="q")).text

    return provider.simple_execution(fn)


async def test_fastest_success_wins_and_loser_is_cancelled(autojump_clock: Any) -> None:
    fast = answer_execution(ScriptedProvider(Reply("fast answer", delay=1)))
    slow = answer_execution(ScriptedProvider(Reply("slow answer", delay=5)))

    result = await agtl.race(slow, fast)

    assert result.value == "fast answer"
    assert result is fast.outcome
    loser = slow.outcome
    assert loser is not None
    assert loser.status is Status.CANCELED
    assert loser.cancel is not None
    assert loser.cancel.source is CancelSource.HANDLE
    assert loser.cancel.reason == f"lost the race to execution {fast.execution_id}"
    assert trio.current_time() == pytest.approx(2)


async def test_a_failure_does_not_win(autojump_clock: Any) -> None:
    failing = answer_execution(ScriptedProvider(Reply(error=agtl.ProviderError("down"))))
    slow = answer_execution(ScriptedProvider(Reply("late but fine", delay=3)))
    result = await agtl.race(failing, slow)
    assert result.value == "late but fine"
    assert failing.outcome is not None
    assert failing.outcome.status is Status.FAILED


async def test_when_none_succeeds_the_first_failure_is_returned(autojump_clock: Any) -> None:
    canceled = answer_execution(ScriptedProvider(Reply("x", delay=10)))
    canceled.cancel("not needed")
    first_failure = answer_execution(ScriptedProvider(Reply(error=agtl.ProviderError("one"))))
    second_failure = answer_execution(ScriptedProvider(Reply(error=agtl.ProviderError("two"))))
    result = await agtl.race(canceled, first_failure, second_failure)
    assert result is first_failure.outcome
    assert str(result.error) == "one"


async def test_all_canceled_returns_the_first(autojump_clock: Any) -> None:
    a = answer_execution(ScriptedProvider(Reply("x")))
    b = answer_execution(ScriptedProvider(Reply("y")))
    a.cancel()
    b.cancel()
    assert await agtl.race(a, b) is a.outcome


async def test_race_with_already_started_executions(autojump_clock: Any) -> None:
    first = answer_execution(ScriptedProvider(Reply("one", delay=2)))
    second = answer_execution(ScriptedProvider(Reply("two", delay=1)))
    async with first, second:
        result = await agtl.race(first, second)
    assert result.value == "two"
    assert first.outcome is not None
    assert first.outcome.status is Status.CANCELED


async def test_race_arguments_are_checked() -> None:
    with pytest.raises(agtl.InvalidArgumentError, match="at least one"):
        await agtl.race()
    execution = answer_execution(ScriptedProvider("x"))
    with pytest.raises(agtl.InvalidArgumentError, match="twice"):
        await agtl.race(execution, execution)
    with pytest.raises(agtl.InvalidArgumentError, match=r"executions\[1\]"):
        await agtl.race(execution, "nope")  # type: ignore[arg-type]
