"""CallJournal: finished calls are recorded, and a new attempt replays them instead of paying."""

from __future__ import annotations

import json

import pytest

import agtl
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
    recorded: list[agtl.JournalEntry] = []
    journal = agtl.CallJournal(on_record=recorded.append)
    provider = ScriptedProvider(respond=echo).with_journal(journal)
    result = await provider.simple_execution(three_calls)
    assert result.value == ["answer to one", "answer to two", "answer to three"]
    assert [e.text for e in journal.entries] == result.value
    assert recorded == list(journal.entries)
    assert journal.entries[0].usage.output_tokens == 3
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
