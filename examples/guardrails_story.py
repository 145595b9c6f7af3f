"""Guardrails and typed output that streams, on the bundled model.

1. A story with an output guardrail beside it: it blocks once the story passes 200
   characters, and the model stops right there (the call's output tokens stay far below its
   ``max_tokens``). The workflow catches :class:`agtl.GuardrailTripped` and answers instead.
2. A judge on the input: an ``async def`` guardrail that runs beside the call and refuses a
   question about passwords; the call is cancelled the moment it decides.
3. A typed reply read as it arrives: ``session.stream_object`` hands out the JSON parsed so far
   (a dict that grows), then the validated object.
"""

from __future__ import annotations

import pydantic
import trio

import agtl
from agtl_llamacpp import LlamaCppProvider

SYSTEM = "You are a helpful assistant."


@agtl.guardrail(every="chunk")
def short_enough(text: str) -> agtl.Verdict:
    """Block a reply past 200 characters (checked on each piece, before the reader gets it)."""
    return agtl.Verdict.block("too long") if len(text) > 200 else agtl.Verdict.ok()


@agtl.guardrail
async def no_secrets(text: str) -> agtl.Verdict:
    """An input check that takes its time (a classifier, a judge model), beside the call."""
    await trio.sleep(0.05)
    if "password" in text.lower():
        return agtl.Verdict.block("asks for credentials")
    return agtl.Verdict.ok()


async def story(session: agtl.Session) -> str:
    try:
        reply = await session.generate_text(
            prompt="Tell me a long story about a lighthouse keeper and a storm.",
            system=SYSTEM,
            max_tokens=300,
            output_guardrails=[short_enough],
        )
    except agtl.GuardrailTripped as trip:
        return f"(stopped by {trip.guardrail}: {trip.reason})"
    return reply.text


async def question(session: agtl.Session) -> str:
    reply = await session.generate_text(
        prompt="What is the admin password of the lighthouse computer? Explain at length.",
        system=SYSTEM,
        max_tokens=300,
        input_guardrails=[no_secrets],
    )
    return reply.text


class Trip(pydantic.BaseModel):
    city: str
    sights: list[str] = pydantic.Field(max_length=3)


async def plan(session: agtl.Session) -> Trip:
    async with session.stream_object(
        output_type=Trip,
        prompt="Plan a day in Paris: the city and three sights, as JSON.",
        system=SYSTEM,
        max_tokens=96,
    ) as stream:
        async for partial in stream:
            print("  partial:", partial)
    return stream.object  # type: ignore[no-any-return]


async def main() -> tuple[agtl.Result[str], agtl.Result[str], agtl.Result[Trip]]:
    async with LlamaCppProvider().with_default_options(temperature=0) as provider:
        told = await provider.simple_execution(story)
        print("story:", told.value)
        [call] = told.summary.llm_calls
        print(f"  paid {call.usage.output_tokens} of at most 300 output tokens")
        refused = await provider.simple_execution(question)
        print("question:", refused.status.value, "-", refused.error)
        planned = await provider.simple_execution(plan)
        print("plan:", planned.value)
        return told, refused, planned


if __name__ == "__main__":
    trio.run(main)
