"""Workflows `agtl eval` runs in the tests, on a priced scripted provider (deterministic, fast)."""

from __future__ import annotations

import os

import agtl
from agtl.testing import Reply, ScriptedProvider

CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Spain": "Madrid"}


def _reply(request: agtl.GenerationRequest) -> Reply:
    question = request.messages[-1].content or ""
    country = next((c for c in CAPITALS if c in question), None)
    if question.startswith("slow"):
        return Reply(["word "] * 400, delay=0.01)
    wrong = question.startswith("wrong") and country == "Italy"
    return Reply("Lyon" if wrong or country is None else CAPITALS[country], delay=0.01)


#: `agtl eval` uses a file's own provider, as `agtl serve` does.
agtl_provider = ScriptedProvider(respond=_reply).with_pricing(
    {"scripted-model": agtl.Price("10000", "10000")}  # $0.01 per token
)


async def answer(session: agtl.Session, question: str) -> str:
    return (await session.generate_text(prompt=question)).text


async def wrong_on_italy(session: agtl.Session, question: str) -> str:
    return (await session.generate_text(prompt=f"wrong {question}")).text


async def slow(session: agtl.Session, question: str) -> str:
    return (await session.generate_text(prompt=f"slow {question}")).text


def worker_provider() -> agtl.Provider:
    """What an `agtl worker` builds for the eval's cases (ProviderSpec.factory): the same
    scripted answers, the model named after the worker (``AGTL_TEST_WORKER``)."""
    return ScriptedProvider(respond=_reply, model=os.environ.get("AGTL_TEST_WORKER", "worker"))
