"""Every example runs, and says what it claims."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

import agtl
from examples import cancellation_patterns, quickstart, streaming_events

ROOT = Path(__file__).resolve().parent.parent


async def test_quickstart() -> None:
    result = await quickstart.main()
    assert result.value == "The capital of France is Paris."


async def test_cancellation_patterns() -> None:
    # Real time: the handle, signal and thread cancels wait for the story's first words.
    outcomes = await cancellation_patterns.main()
    sources = {
        "handle": agtl.CancelSource.HANDLE,
        "signal": agtl.CancelSource.SIGNAL,
        "timeout": agtl.CancelSource.TIMEOUT,
        "ui thread": agtl.CancelSource.HANDLE,
    }
    for name, source in sources.items():
        result = outcomes[name]
        assert isinstance(result, agtl.Result)
        assert result.status is agtl.Status.CANCELED
        assert result.cancel is not None
        assert result.cancel.source is source
        assert result.partial is not None
        if name != "timeout":  # how far a 50 ms timeout gets depends on the machine's load
            assert result.partial.text
    race = outcomes["race"]
    assert isinstance(race, agtl.Result)
    assert race.value == "fast answer"
    assert isinstance(outcomes["stream"], str)
    assert len(outcomes["stream"]) >= 100


async def test_the_timeout_pattern_keeps_what_was_said(autojump_clock: trio.abc.Clock) -> None:
    # On a virtual clock the scripted story's timeline is exact: words every 10 ms, cut at 50.
    result = await cancellation_patterns.via_timeout()
    assert result.cancel is not None
    assert result.cancel.source is agtl.CancelSource.TIMEOUT
    assert result.partial is not None
    assert result.partial.text.startswith("Once upon a time")


async def test_streaming_events() -> None:
    result = await streaming_events.main()
    assert result.value == "Tasks live inside nurseries and never outlive them."
    assert [e.type for e in result.events][:2] == ["status", "chunk"]
    assert result.summary.tool_calls[0].result == 8


def run_readme_block(index: int, document: str = "README.md") -> subprocess.CompletedProcess[str]:
    """Run the ``index``-th python code block of a document as a script."""
    text = (ROOT / document).read_text()
    code = text.split("```python\n")[index + 1].split("```", 1)[0]
    script = ROOT / ".pytest_cache" / f"{Path(document).stem}_block_{index}.py"
    script.parent.mkdir(exist_ok=True)
    script.write_text(code)
    completed = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return completed


def test_readme_example_runs() -> None:
    out = run_readme_block(0).stdout
    assert out.startswith("succeeded Paris.")
    assert "LLM calls 1" in out


async def test_local_model_example() -> None:
    from examples import local_model

    answered, stopped = await local_model.main()
    assert answered.value == "The capital of France is Paris."
    assert stopped.status is agtl.Status.CANCELED
    assert stopped.cancel is not None
    assert stopped.cancel.source is agtl.CancelSource.HANDLE
    assert stopped.cancel.reason == "read enough"
    assert stopped.partial is not None
    assert len(stopped.partial.text) >= 80  # what the model said before the stop is kept
    assert stopped.summary.llm_calls[0].stop_reason is agtl.StopReason.CANCELLED


async def test_tool_agent_example() -> None:
    from examples import tool_agent

    answered, stopped = await tool_agent.main()
    assert answered.status is agtl.Status.SUCCEEDED
    [weather] = answered.summary.tool_calls
    assert weather.name == "get_weather"
    assert weather.status is agtl.ToolCallStatus.OK
    assert answered.value
    assert stopped.status is agtl.Status.CANCELED
    assert stopped.cancel is not None
    assert stopped.cancel.source is agtl.CancelSource.TIMEOUT
    # The timeout lands while the approval tool waits (the model's call takes a second or
    # two of the eight); the tool is then recorded as cancelled.
    assert [(c.name, c.status) for c in stopped.summary.tool_calls] == [
        ("ask_approval", agtl.ToolCallStatus.CANCELLED)
    ]


def test_readme_local_model_example_runs() -> None:
    out = run_readme_block(1).stdout
    assert out.startswith("The capital of France is Paris.")
    assert "provenance=<Provenance.COUNTED" in out


def test_race_local_remote_example() -> None:
    from examples import race_local_remote

    winner, outcomes = race_local_remote.main([])
    assert winner.status is agtl.Status.SUCCEEDED
    assert str(winner.value).endswith("The capital of France is Paris.")
    assert sorted(o.status.value for o in outcomes) == ["canceled", "succeeded"]
    loser = next(o for o in outcomes if o.status is agtl.Status.CANCELED)
    assert loser.cancel is not None
    assert "lost the race" in (loser.cancel.reason or "")


async def test_conversation_example() -> None:
    from examples import conversation_chat

    conversation = await conversation_chat.main()
    entries = conversation.entries
    assert [e.partial for e in entries if e.role is agtl.Role.ASSISTANT] == [False, True, False]
    assert len(conversation.markers) == 1
    assert conversation.markers[0].reason == "Stop pressed"
    stopped = [e for e in entries if e.role is agtl.Role.ASSISTANT][1]
    assert stopped.content  # the 20 pieces that streamed before Stop are kept
    assert "Rome" in entries[-1].content


def test_provider_guide_example_runs() -> None:
    out = run_readme_block(6, "guides/providers.md").stdout.splitlines()
    assert out == [
        "succeeded 'structured concurrency rocks ' 0",
        "delay: must be >= 0 seconds, got -1",
    ]


def test_tools_guide_examples_run() -> None:
    out = run_readme_block(0, "guides/tools.md").stdout
    assert out.strip() == "get_weather ['city']"
    typed = run_readme_block(5, "guides/tools.md").stdout.split()
    assert typed[:2] == ["Capital", "True"]
    assert int(typed[2]) >= 1
    streamed = run_readme_block(6, "guides/tools.md").stdout.splitlines()
    assert streamed[0] == "{}"
    assert streamed[-2] == "{'city': 'Paris', 'sights': ['Louvre', 'Orsay']}"
    assert streamed[-1] == "Trip(city='Paris', sights=['Louvre', 'Orsay'])"


def test_getting_started_workflow_runs() -> None:
    out = run_readme_block(0, "guides/getting-started.md").stdout
    assert out.startswith("status drafting")
    assert "complete" in out
    assert "LLM calls 1" in out


def test_asyncio_guide_examples_run() -> None:
    out = run_readme_block(0, "guides/asyncio-and-scripts.md").stdout
    assert out.split() == ["succeeded", "Paris.", "1"]
    streamed = run_readme_block(1, "guides/asyncio-and-scripts.md").stdout.splitlines()
    assert streamed == [
        "text Once ",
        "text upon ",
        "text a ",
        "text time",
        "complete Once upon a time",
        "succeeded",
        "Paris.",
    ]


async def test_otel_console_example_prints_the_span_tree() -> None:
    from examples import otel_console

    result, lines = await otel_console.main()
    assert result.status is agtl.Status.SUCCEEDED
    assert lines[0] == "handle request"
    assert lines[1].startswith("  agtl.execution weather  (agtl.status=succeeded")
    names = [line.strip().split("  (")[0] for line in lines[2:]]
    chat = "chat SmolLM2-135M-Instruct.Q4_1"
    assert names == [chat, "execute_tool get_weather", chat]
    assert all(line.startswith("    ") for line in lines[2:])  # children of the execution
    call = result.summary.llm_calls[0]
    assert f"gen_ai.usage.input_tokens={call.usage.input_tokens}" in lines[2]
    assert f"gen_ai.usage.output_tokens={call.usage.output_tokens}" in lines[2]
    assert "agtl.tool.status=ok" in lines[3]


async def test_mcp_agent_example() -> None:
    from examples import mcp_agent

    answered, stopped = await mcp_agent.main()
    assert answered.status is agtl.Status.SUCCEEDED
    [weather] = answered.summary.tool_calls
    assert (weather.name, weather.status) == ("get_weather", agtl.ToolCallStatus.OK)
    assert stopped.status is agtl.Status.CANCELED
    assert stopped.cancel is not None
    # Stopped by the signal, fired from the server's progress report: while the tool ran.
    assert stopped.cancel.source is agtl.CancelSource.SIGNAL
    assert "slow is under way" in (stopped.cancel.reason or "")
    assert [(c.name, c.status) for c in stopped.summary.tool_calls] == [
        ("slow", agtl.ToolCallStatus.CANCELLED)
    ]


def test_temporal_demo() -> None:
    # A real dev server, two worker processes and the bundled model.
    from examples import temporal_demo

    results, canceled = temporal_demo.main()
    assert [r.status for r in results] == [agtl.Status.SUCCEEDED] * 4
    assert "Paris" in str(results[0].value)
    assert canceled.status is agtl.Status.CANCELED
    assert canceled.cancel is not None
    assert "the demo stopped it" in (canceled.cancel.reason or "")
    assert canceled.partial is not None
    assert canceled.partial.text


async def test_approval_agent_example() -> None:
    from examples import approval_agent

    approval_agent.SENT.clear()
    denied, approved = await approval_agent.main()
    assert denied.status is agtl.Status.SUCCEEDED, denied
    [refused] = denied.summary.tool_calls
    assert refused.status is agtl.ToolCallStatus.DENIED
    assert refused.error == "not without an invoice"
    assert approved.status is agtl.Status.SUCCEEDED, approved
    [sent] = approved.summary.tool_calls
    assert sent.status is agtl.ToolCallStatus.OK
    assert sent.approval is not None
    assert sent.approval.by == "the example"
    assert len(approval_agent.SENT) == 1  # only the approved call went out


async def test_resilient_calls_example() -> None:
    from examples import resilient_calls

    results = await resilient_calls.main([])
    assert all(r.succeeded and "Paris" in (r.value or "") for r in results)
    outcomes = []
    for result in results:
        attempts = result.summary.llm_calls[0].details["attempts"]
        assert isinstance(attempts, list)
        outcomes.append([a["outcome"] for a in attempts])
    # Two failures open the remote's breaker: the third call goes straight to the local model.
    assert outcomes == [["error", "answered"], ["error", "answered"], ["answered"]]


async def test_research_team_example() -> None:
    from examples import research_team

    result = await research_team.main()
    assert result.succeeded, result.error
    assert "Paris" in (result.value or "")
    summary = result.summary
    assert {c.details["agent"] for c in summary.llm_calls} == {"planner"}
    [asked] = summary.tool_calls
    assert (asked.name, asked.status) == ("researcher", agtl.ToolCallStatus.OK)
    [child] = summary.children
    assert child.status is agtl.Status.SUCCEEDED
    assert child.usage.output_tokens


async def test_guardrails_story_example() -> None:
    from examples import guardrails_story

    told, refused, planned = await guardrails_story.main()
    assert told.value == "(stopped by short_enough: too long)"
    [call] = told.summary.llm_calls
    assert call.usage.output_tokens is not None
    assert call.usage.output_tokens < 300  # the model stopped at the trip
    assert isinstance(refused.error, agtl.GuardrailTripped)
    assert refused.error.guardrail == "no_secrets"
    trip = planned.unwrap()
    assert isinstance(trip, guardrails_story.Trip)
    assert trip.city


def test_guardrails_guide_example_runs() -> None:
    out = run_readme_block(0, "guides/guardrails.md").stdout.splitlines()
    assert out == [
        "I can't help with that (no_secrets: mentions a password)",
        "on_topic input ok False None",
        "no_secrets output block True 2",
    ]


def test_evals_guide_example_runs() -> None:
    out = run_readme_block(0, "guides/evals.md").stdout
    assert out.strip() == "exact pass rate 0.5 2"


def test_the_capitals_example_files_are_a_dataset_and_a_scorer() -> None:
    from agtl import evals
    from examples.evals import capitals

    dataset = evals.Dataset.load(ROOT / "examples" / "evals" / "capitals.jsonl")
    assert len(dataset) == 6
    case = dataset.cases[0]
    assert capitals.short(case, "Paris", None) == evals.Score(1.0, "1 words")  # type: ignore[arg-type]


async def test_mcp_served_example_over_stdio() -> None:
    import agtl.testing
    from agtl.mcp import MCPServer

    server = MCPServer.stdio(
        sys.executable,
        ["-m", "agtl.cli", "mcp-serve", "examples/mcp_served.py:answer", "-q"],
        cwd=ROOT,
    )
    async with server:
        [answer] = await server.tools()
        assert answer.name == "answer"
        assert answer.parameters["required"] == ["question"]
        asks = agtl.ToolCallRequest("c1", "answer", {"question": "What is the capital of France?"})
        model = agtl.testing.ScriptedProvider(agtl.testing.Reply(tool_calls=[asks]), "ok")

        async def ask(session: agtl.Session) -> str:
            return (await session.generate_text(prompt="go", tools=[answer])).text

        result = await model.simple_execution(ask)
    [call] = result.summary.tool_calls
    assert call.status is agtl.ToolCallStatus.OK, call
    assert str(call.result).strip()  # the bundled model's answer, from the other process


def test_a2a_agent_example_answers_a_message() -> None:
    import asyncio

    from a2a.client import create_client
    from a2a.helpers.proto_helpers import new_text_message
    from a2a.types.a2a_pb2 import Role, SendMessageRequest, TaskState

    from tests.local import free_port, listening_agtl

    port = free_port()
    with listening_agtl("a2a-serve", "examples/a2a_agent.py:answer", "--port", str(port)):

        async def ask() -> list[Any]:
            client = await create_client(f"http://127.0.0.1:{port}/")
            try:
                message = new_text_message("What is the capital of France?", role=Role.ROLE_USER)
                return [e async for e in client.send_message(SendMessageRequest(message=message))]
            finally:
                await client.close()

        events = asyncio.run(ask())
    last = events[-1].status_update.status.state
    assert last == TaskState.TASK_STATE_COMPLETED
    values = [
        part.text
        for e in events
        if e.HasField("artifact_update") and e.artifact_update.artifact.name == "value"
        for part in e.artifact_update.artifact.parts
    ]
    assert values
    assert values[0].strip()
