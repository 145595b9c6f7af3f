"""CallJournal: finished calls are recorded, and a new attempt replays them instead of paying."""

from __future__ import annotations

import json

import pytest
import trio

import agtl
from agtl.journal import Decision
from agtl.testing import Reply, ScriptedProvider


async def three_calls(session: agtl.Session) -> list[str]:
    texts = []
    for question in ("one", "two", "three"):
        reply = await session.generate_text(prompt=question)
        texts.append(reply.text)
    return texts


def echo(request: agtl.GenerationRequest) -> Reply:
    return Reply(f"answer to {request.messages[-1].content}", usage=agtl.Usage(5, 3))


async def test_finished_calls_are_recorded_in_order_with_their_figures() -> None:
    recorded: list[agtl.JournalEntry | agtl.ToolEntry | Decision] = []
    journal = agtl.CallJournal(on_record=recorded.append)
    provider = ScriptedProvider(respond=echo).with_journal(journal)
    result = await provider.simple_execution(three_calls)
    assert result.value == ["answer to one", "answer to two", "answer to three"]
    entries = [e for e in journal.entries if isinstance(e, agtl.JournalEntry)]
    assert [e.text for e in entries] == result.value
    assert recorded == list(journal.entries)
    assert entries[0].usage.output_tokens == 3
    assert len({e.fingerprint for e in journal.entries}) == 3
    assert journal.replayed == 0
    assert not any(call.replayed for call in result.summary.llm_calls)


async def test_a_new_attempt_replays_matching_calls_without_calling_the_model() -> None:
    first = agtl.CallJournal()
    await ScriptedProvider(respond=echo).with_journal(first).simple_execution(three_calls)
    # The entries survive a trip through JSON, as they do in a heartbeat.
    saved = json.loads(json.dumps([e.to_dict() for e in first.entries[:2]]))
    second = agtl.CallJournal(agtl.JournalEntry.from_dict(d) for d in saved)
    model = ScriptedProvider(respond=echo)
    result = await model.with_journal(second).simple_execution(three_calls)
    assert result.value == ["answer to one", "answer to two", "answer to three"]
    assert [r.messages[-1].content for r in model.calls] == ["three"]  # only the third is live
    assert [c.replayed for c in result.summary.llm_calls] == [True, True, False]
    assert second.replayed == 2
    assert len(second.entries) == 3  # what a third attempt would replay
    assert result.summary.total_usage.output_tokens == 9  # each call counted once
    assert "(replayed)" in result.summary.format()


async def test_a_diverging_workflow_pays_again_from_the_first_difference() -> None:
    first = agtl.CallJournal()
    await ScriptedProvider(respond=echo).with_journal(first).simple_execution(three_calls)

    async def different_middle(session: agtl.Session) -> list[str]:
        texts = []
        for question in ("one", "TWO", "three"):
            texts.append((await session.generate_text(prompt=question)).text)
        return texts

    second = agtl.CallJournal(first.entries)
    model = ScriptedProvider(respond=echo)
    result = await model.with_journal(second).simple_execution(different_middle)
    # "three" matches an old entry, but it comes after the difference: it is made live.
    assert [r.messages[-1].content for r in model.calls] == ["TWO", "three"]
    assert [c.replayed for c in result.summary.llm_calls] == [True, False, False]
    assert second.replayed == 1


async def test_a_cancelled_call_is_not_recorded() -> None:
    journal = agtl.CallJournal()
    provider = ScriptedProvider(Reply(["a", "b", "c"], hang=True)).with_journal(journal)
    result = await provider.simple_execution(three_calls, timeout=0.2)
    assert result.canceled
    assert journal.entries == ()


def test_with_journal_rejects_what_is_not_a_journal() -> None:
    with pytest.raises(agtl.InvalidArgumentError, match="CallJournal"):
        ScriptedProvider().with_journal([])  # type: ignore[arg-type]


def _charging(ledger: list[str], keys: list[str]) -> agtl.Tool:
    @agtl.tool
    async def charge(amount: int) -> dict[str, object]:
        """Charge the customer."""
        keys.append(agtl.current_tool_call().idempotency_key)
        ledger.append(f"charged {amount}")
        return {"charged": amount}

    return charge


def _charge_then_answer(request: agtl.GenerationRequest) -> Reply:
    if request.messages[-1].role is agtl.Role.TOOL:
        return Reply("done")
    return Reply("", tool_calls=[agtl.ToolCallRequest("c1", "charge", {"amount": 5})])


def _paying(journal: agtl.CallJournal) -> agtl.Provider:
    return ScriptedProvider(respond=_charge_then_answer).with_journal(journal)


async def test_a_finished_tool_call_is_replayed_not_run_again() -> None:
    ledger: list[str] = []
    keys: list[str] = []
    charge = _charging(ledger, keys)

    async def pay(session: agtl.Session) -> str:
        return (await session.generate_text(prompt="pay", tools=[charge])).text

    first = agtl.CallJournal(key="order-17")
    done = (
        await ScriptedProvider(respond=_charge_then_answer)
        .with_journal(first)
        .simple_execution(pay)
    )
    assert done.value == "done"
    assert [type(e).__name__ for e in first.entries] == [
        "JournalEntry",
        "ToolEntry",
        "JournalEntry",
    ]
    saved = json.loads(json.dumps([e.to_dict() for e in first.entries]))

    # The next attempt (a retry after a crash) has the first attempt's entries.
    model = ScriptedProvider(respond=_charge_then_answer)
    second = agtl.CallJournal((agtl.journal.entry_from_dict(d) for d in saved), key="order-17")
    again = await model.with_journal(second).simple_execution(pay)
    assert again.value == "done"
    assert ledger == ["charged 5"]  # the side effect happened once
    assert model.calls == ()  # nothing reached the model either
    [call] = again.summary.tool_calls
    assert call.replayed
    assert call.status is agtl.ToolCallStatus.OK
    assert call.result == {"charged": 5}
    assert "charge ok" in again.summary.format()
    assert "(replayed)" in again.summary.format()
    assert keys == ["order-17:0"]


async def test_the_call_that_was_running_runs_again_with_the_same_idempotency_key() -> None:
    ledger: list[str] = []
    keys: list[str] = []
    started = trio.Event()

    @agtl.tool
    async def charge(amount: int) -> str:
        """Charge the customer (slowly: the first attempt dies in the middle)."""
        keys.append(agtl.current_tool_call().idempotency_key)
        started.set()
        await trio.sleep(0.05 if len(keys) > 1 else 10)
        ledger.append(agtl.current_tool_call().idempotency_key)
        return "charged"

    async def pay(session: agtl.Session) -> str:
        return (await session.generate_text(prompt="pay", tools=[charge])).text

    first = agtl.CallJournal(key="order-18")
    execution = (
        ScriptedProvider(respond=_charge_then_answer).with_journal(first).simple_execution(pay)
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(execution.result)
        await started.wait()
        execution.cancel("the worker died")
    assert [type(e).__name__ for e in first.entries] == ["JournalEntry"]  # no tool entry
    second = agtl.CallJournal(first.entries, key="order-18")
    again = (
        await ScriptedProvider(respond=_charge_then_answer)
        .with_journal(second)
        .simple_execution(pay)
    )
    assert again.value == "done"
    assert keys == ["order-18:0", "order-18:0"]  # the same key in both attempts
    assert ledger == ["order-18:0"]
    assert not again.summary.tool_calls[0].replayed


async def test_calls_of_one_step_replay_whatever_order_they_finished_in() -> None:
    ran: list[str] = []

    @agtl.tool
    async def slow(name: str) -> str:
        """Slow."""
        await trio.sleep(0.02)
        ran.append(name)
        return name

    @agtl.tool
    async def fast(name: str) -> str:
        """Fast."""
        ran.append(name)
        return name

    def respond(request: agtl.GenerationRequest) -> Reply:
        if request.messages[-1].role is agtl.Role.TOOL:
            return Reply("both")
        calls = [
            agtl.ToolCallRequest("a", "slow", {"name": "slow"}),
            agtl.ToolCallRequest("b", "fast", {"name": "fast"}),
        ]
        return Reply("", tool_calls=calls)

    async def both(session: agtl.Session) -> str:
        return (await session.generate_text(prompt="go", tools=[slow, fast])).text

    first = agtl.CallJournal()
    await ScriptedProvider(respond=respond).with_journal(first).simple_execution(both)
    assert ran == ["fast", "slow"]  # finished in the other order than they were asked for
    second = agtl.CallJournal(first.entries)
    again = await ScriptedProvider(respond=respond).with_journal(second).simple_execution(both)
    assert again.value == "both"
    assert ran == ["fast", "slow"]  # neither ran again
    assert [c.replayed for c in again.summary.tool_calls] == [True, True]


async def test_without_a_key_each_attempt_has_its_own_idempotency_keys() -> None:
    keys: list[str] = []
    charge = _charging([], keys)

    async def pay(session: agtl.Session) -> str:
        return (await session.generate_text(prompt="pay", tools=[charge])).text

    result = await ScriptedProvider(respond=_charge_then_answer).simple_execution(pay)
    assert keys == [f"{result.execution_id}:0"]
    with pytest.raises(agtl.NotInToolError, match="only available inside a tool"):
        agtl.current_tool_call()
