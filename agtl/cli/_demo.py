"""`agtl demo`: streaming, a timeout mid-stream, a tool call, a race, and the summaries."""

from __future__ import annotations

import argparse
from typing import Any

import trio

import agtl
from agtl.cli._common import console, make_provider, summary_table

SYSTEM = "You are a helpful assistant."


@agtl.tool
async def get_weather(city: str) -> str:
    """Current weather of a city.

    Args:
        city: The city's name.
    """
    return f"sunny and 21 degrees in {city}"


def _mid_reply_timeout(measured: agtl.Summary) -> float:
    """A timeout for the essay that fires after about 40 tokens of it on this machine: three
    times the first reply's time to first token (the essay's prompt is longer), plus 40
    tokens at its decode rate; at least 1.5 s, at most 30 s."""
    call = measured.llm_calls[0] if measured.llm_calls else None
    first = call.time_to_first_token if call is not None else None
    rate = call.output_tokens_per_second if call is not None else None
    if first is None or not rate:
        return 1.5
    return min(30.0, max(1.5, 3 * first + 40 / rate))


async def _demo(provider: Any, rival: Any, out: Any) -> list[tuple[str, agtl.Result[Any]]]:
    rows: list[tuple[str, agtl.Result[Any]]] = []

    def streamer(prompt: str, max_tokens: int = 400) -> Any:
        async def run(session: agtl.Session) -> str:
            async with session.stream_text(
                prompt=prompt, system=SYSTEM, max_tokens=max_tokens
            ) as s:
                async for delta in s:
                    out.print(delta, end="", style="cyan")
            out.print()
            return s.text

        return run

    out.rule("[bold]1. A reply, streamed live as the model writes it")
    rows.append(
        (
            "streamed reply",
            await provider.simple_execution(streamer("What is the capital of France?")).result(),
        )
    )

    out.rule("[bold]2. A timeout that fires mid-stream: the partial text is kept")
    # Room for far more text than the timeout allows, which is set from how fast this machine
    # answered just now, so that it lands mid-reply on a fast machine and a busy one alike.
    timeout = _mid_reply_timeout(rows[0][1].summary)
    stopped = await provider.simple_execution(
        streamer("Write a long essay about the sea.", max_tokens=1500), timeout=timeout
    ).result()
    rows.append(("timed out", stopped))
    if stopped.partial is not None and stopped.cancel is not None:
        out.print(
            f"\n[yellow]→ {stopped.status.value} by {stopped.cancel.source.value} "
            f"({stopped.cancel.reason}); kept {len(stopped.partial.text)} characters"
        )

    out.rule("[bold]3. A tool call: the model asks for the weather, agtl runs the tool")

    async def weather(session: agtl.Session) -> str:
        reply = await session.generate_text(
            prompt="What is the weather in Paris?",
            system=SYSTEM,
            tools=[get_weather],
            tool_choice="get_weather",
            max_tokens=48,
        )
        for step in reply.steps:
            for call in step.tool_calls:
                out.print(
                    f"[magenta]tool[/] {call.name}({call.arguments}) -> {call.result!r} "
                    f"[dim]({call.status.value}, {1000 * (call.duration or 0):.1f} ms)"
                )
        out.print(reply.text, style="cyan")
        return reply.text

    rows.append(("tool call", await provider.simple_execution(weather).result()))

    out.rule("[bold]4. Racing two providers: the first to succeed wins, the other is cancelled")
    out.print(
        "[dim]Two copies of the model, one per provider, answer at the same time: a brief "
        "answer (40 tokens at most) against a thorough one (300). The brief one finishes "
        "first; the thorough one is stopped where it is, and costs no more.[/]"
    )

    def quiet(prompt: str, max_tokens: int) -> Any:
        async def run(session: agtl.Session) -> str:
            return (
                await session.generate_text(prompt=prompt, system=SYSTEM, max_tokens=max_tokens)
            ).text

        return run

    brief = provider.simple_execution(quiet("In one sentence: what is the capital of Italy?", 40))
    thorough = rival.simple_execution(quiet("Describe the history of Rome in detail.", 300))
    winner = await agtl.race(brief, thorough)
    for label, execution in (("race: brief", brief), ("race: thorough", thorough)):
        result = execution.outcome
        assert result is not None
        rows.append((label, result))
        out_tokens = result.summary.total_usage.output_tokens
        if result is winner:
            mark = f"[green]won[/] after {result.summary.duration:.2f} s"
            said = str(result.value or "")
        else:
            mark = f"[yellow]{result.status.value}[/] after {result.summary.duration:.2f} s"
            said = "" if result.partial is None else result.partial.text
        out.print(f"{label:16} {mark}, {out_tokens} tokens: {said[:60]!r}")

    out.rule("[bold]5. What each execution did (every figure measured in this run)")
    out.print(summary_table(rows))
    return rows


def run(args: argparse.Namespace) -> int:
    out = console()
    provider = make_provider(args)
    out.print(
        f"[bold]agtl demo[/] on [cyan]{provider.default_model}[/] "
        f"({provider.name}, in-process, no network)\n"
    )
    rival = make_provider(args)  # a second copy of the model, for the race
    try:
        rows = trio.run(_demo, provider, rival, out)
    finally:
        trio.run(provider.aclose)
        trio.run(rival.aclose)
    return 0 if rows[0][1].succeeded else 1
