"""A team of two agents on the bundled model: a planner that asks a researcher, which looks
the topic up in the team's notes. The researcher runs as a child execution of the planner's:
its own Result, listed in the planner's summary with what it cost, and stopped with it.

From the command line (``team`` is a ready workflow):
`agtl run examples/research_team.py:team --input '{"prompt": "What is the capital of France?"}'`
"""

from __future__ import annotations

import trio

import agtl
from agtl_llamacpp import LlamaCppProvider

NOTES = {
    "france": "Paris is the capital of France.",
    "japan": "Tokyo is the capital of Japan.",
}
OPTIONS = {"temperature": 0, "max_tokens": 48}


@agtl.tool
async def lookup(topic: str) -> str:
    """Look a topic up in the team's notes.

    Args:
        topic: What to look up, for example a country.
    """
    found = [note for key, note in NOTES.items() if key in topic.lower()]
    # A 135M model's arguments are loose: when nothing matches, hand it every note.
    return " ".join(found or NOTES.values())


researcher = agtl.Agent(
    "researcher",
    "You are a helpful assistant. Look the topic up, then answer in one sentence.",
    tools=[lookup],
    tool_choice="each",  # a 135M model calls its tool when told to
    options=OPTIONS,
)
planner = agtl.Agent(
    "planner",
    "You are a helpful assistant. Ask the researcher, then answer the user in one sentence.",
    tools=[researcher.as_tool(description="Ask the researcher a question.", timeout=120)],
    tool_choice="each",
    options=OPTIONS,
)
team = planner.workflow


async def main(question: str = "What is the capital of France?") -> agtl.Result[str]:
    async with LlamaCppProvider() as provider:
        result = await provider.simple_execution(lambda session: team(session, question))
    print(result.value)
    summary = result.summary
    for call in summary.llm_calls:
        print(f"  {call.details['agent']}: call {call.index}, {call.usage.output_tokens} tokens")
    for child in summary.children:
        print(f"  child {child.execution_id[:8]}: {child.status.value}, {child.usage}")
    return result


if __name__ == "__main__":
    trio.run(main)
