"""What an activity's heartbeat carries, without a server."""

from __future__ import annotations

import asyncio
import json

import trio

import agtl
from agtl.temporal._activity import _Heartbeat
from agtl.testing import Reply, ScriptedProvider


def five_call_journal() -> agtl.CallJournal:
    journal = agtl.CallJournal()
    provider = ScriptedProvider(
        respond=lambda r: Reply(f"{r.messages[-1].content}: " + "x" * 200)
    ).with_journal(journal)

    async def five(session: agtl.Session) -> None:
        for i in range(5):
            await session.generate_text(prompt=f"call {i}")

    async def main() -> None:
        assert (await provider.simple_execution(five)).succeeded

    trio.run(main)
    return journal


def test_the_journal_goes_out_as_the_longest_prefix_that_fits() -> None:
    journal = five_call_journal()
    one_entry = len(json.dumps(journal.entries[0].to_dict()).encode())

    async def details(budget: int) -> dict[str, object]:
        beat = _Heartbeat(2, interval=1.0, journal_budget=budget)
        beat.journal = journal
        return beat.details()

    small = asyncio.run(details(2 * one_entry + one_entry // 2))
    assert small["calls"] == 5
    assert small["journal_complete"] is False
    sent = [agtl.JournalEntry.from_dict(d) for d in small["journal"]]  # type: ignore[attr-defined]
    assert sent == list(journal.entries[:2])  # a prefix: a later attempt replays these two
    roomy = asyncio.run(details(100 * one_entry))
    assert roomy["journal_complete"] is True
    assert len(roomy["journal"]) == 5  # type: ignore[arg-type]
    assert roomy["attempt"] == 2
