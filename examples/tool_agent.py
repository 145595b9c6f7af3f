"""A small agent on the bundled model: two tools, one run that finishes, one stopped by a timeout.

The first run forces a weather lookup, then lets the model answer from the tool's result. The
second asks for a human's approval, a tool that takes far longer than the run's ``timeout=``:
the timeout cancels the tool where it waits, and the Result says so, tool call included.

Each run offers the model only the tool it needs. A 135M-parameter model offered tools it has
no use for may keep calling them instead of answering: on some CPUs it asks for the weather
again and again until ``max_steps`` ends the loop.
"""

from __future__ import annotations

import trio

import agtl
from agtl_llamacpp import LlamaCppProvider

SYSTEM = "You are a helpful assistant."


@agtl.tool
async def get_weather(city: str) -> str:
    """Current weather of a city.

    Args:
        city: The city's name.
    """
    return f"It is sunny and 21 degrees in {city}."


@agtl.tool
async def ask_approval(question: str) -> str:
    """Ask a human to approve something; waits for the answer."""
    await trio.sleep(3600)  # nobody answers: a timeout must stop us
    return "approved"


async def main() -> tuple[agtl.Result[str], agtl.Result[str]]:
    async with LlamaCppProvider().with_default_options(temperature=0, max_tokens=48) as provider:

        async def weather(session: agtl.Session) -> str:
            reply = await session.generate_text(
                prompt="What is the weather in Paris?",
                system=SYSTEM,
                tools=[get_weather],
                tool_choice="get_weather",
            )
            return reply.text

        async def purchase(session: agtl.Session) -> str:
            reply = await session.generate_text(
                prompt="Buy a new laptop for the team.",
                system=SYSTEM,
                tools=[ask_approval],
                tool_choice="ask_approval",
            )
            return reply.text

        answered = await provider.simple_execution(weather).result()
        stopped = await provider.simple_execution(purchase, timeout=8).result()
        for result in (answered, stopped):
            print(f"{result.status.value}: {result.value or result.cancel}")
            for call in result.summary.tool_calls:
                print(f"  tool {call.name}({call.arguments}) -> {call.status.value}")
        return answered, stopped


if __name__ == "__main__":
    trio.run(main)
