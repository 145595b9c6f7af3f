"""Workflows and provider factories the Temporal tests submit (imported by the workers too)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import os
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pydantic

import agtl
from agtl.testing import Reply, ScriptedProvider


def scripted(log: str | None = None, delay: float = 0.0, chunks: int = 1) -> agtl.Provider:
    """Answers "echo: <prompt>" (in ``chunks`` pieces, ``delay`` apart); with ``log``, appends
    "<pid> <prompt>" to that file for every request that reaches the model."""

    def respond(request: agtl.GenerationRequest) -> Reply:
        prompt = request.messages[-1].content
        if log is not None:
            fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{os.getpid()} {prompt}\n".encode())
            finally:
                os.close(fd)
        if request.messages[-1].role is agtl.Role.TOOL:
            return Reply(f"tool said: {prompt}", usage=agtl.Usage(4, 3))
        if prompt.startswith("pay ") and request.tools:  # the model asks for the charge
            call = agtl.ToolCallRequest("pay-1", "charge", {"amount": int(prompt.split()[1])})
            return Reply("", tool_calls=[call], usage=agtl.Usage(4, 1))
        text = f"echo: {prompt}"
        if prompt.startswith("slow"):
            pieces = [f"word{i} " for i in range(chunks)]
            return Reply(pieces, delay=delay, usage=agtl.Usage(4, chunks))
        return Reply(text, usage=agtl.Usage(4, 2))

    return ScriptedProvider(respond=respond)


def down() -> agtl.Provider:
    """Every call fails before its first output, as a server in an outage does."""
    outage = agtl.ServerError("503: down for maintenance", status_code=503)
    return ScriptedProvider(respond=lambda request: Reply(error=outage))


async def answer(session: agtl.Session, input: dict[str, Any]) -> str:
    reply = await session.generate_text(prompt=input["prompt"], max_tokens=input.get("max_tokens"))
    return reply.text


async def three_calls(session: agtl.Session, input: dict[str, Any]) -> list[str]:
    texts = []
    for prompt in ("one", "two", input.get("third", "slow third")):
        texts.append((await session.generate_text(prompt=prompt)).text)
    return texts


async def streamed(session: agtl.Session, input: dict[str, Any]) -> AsyncIterator[agtl.Event]:
    """A streaming workflow: its events come back in the Result."""
    for i in range(input["n"]):
        yield session.emit("tick", i)
    text = (await session.generate_text(prompt="stream done")).text
    yield await session.done(text)


async def four_calls(session: agtl.Session, input: dict[str, Any]) -> list[str]:
    """Four streamed calls in a row (the crash fuzz kills its worker somewhere in them)."""
    return [(await session.generate_text(prompt=f"slow {name}")).text for name in "abcd"]


async def no_input(session: agtl.Session) -> str:
    return "no input needed"


async def fails(session: agtl.Session, input: Any) -> None:
    raise ValueError(f"bad value {input!r}")


def not_async(session: agtl.Session) -> None:
    """Not a workflow: submit refuses it."""


class Sky(enum.Enum):
    CLEAR = "clear"
    RAIN = "rain"


class Forecast(pydantic.BaseModel):
    """A typed value that crosses Temporal in its JSON form."""

    city: str
    day: dt.date
    high: Decimal
    sky: Sky


@dataclasses.dataclass(frozen=True)
class Outlook:
    forecasts: tuple[Forecast, ...]
    issued: dt.datetime
    raw: bytes


async def typed(session: agtl.Session, input: dict[str, Any]) -> Outlook:
    """Returns a dataclass holding pydantic models, dates, Decimals, enums and bytes."""
    reply = await session.generate_text(prompt=input["city"])
    forecast = Forecast(
        city=reply.text, day=dt.date(2026, 12, 5), high=Decimal("7.5"), sky=Sky.RAIN
    )
    return Outlook((forecast,), dt.datetime(2026, 12, 4, 9, 0, tzinfo=dt.UTC), b"\x00\x01")


async def unserializable(session: agtl.Session, input: Any) -> Any:
    await session.generate_text(prompt="paid for")
    return {"handle": object()}


def charge_tool(ledger: str, **options: Any) -> agtl.Tool:
    """``charge(amount)``: a side effect, a ledger line "<pid> <idempotency key> <amount>"."""

    @agtl.tool(**options)
    def charge(amount: int) -> str:  # a plain def: it runs in a thread, the key reaches it
        """Charge the customer."""
        key = agtl.current_tool_call().idempotency_key
        with open(ledger, "a", encoding="utf-8") as book:
            book.write(f"{os.getpid()} {key} {amount}\n")
        return f"charged {amount}"

    return charge


async def approved_charge(session: agtl.Session, input: dict[str, Any]) -> str:
    """The model asks to charge; a person must approve it first."""
    charge = charge_tool(
        input["ledger"], needs_approval=True, approval_timeout=input.get("approval_timeout")
    )
    prompt = f"pay {input.get('amount', 5)}"
    return (await session.generate_text(prompt=prompt, tools=[charge])).text


async def asks_a_number(session: agtl.Session, input: Any) -> str:
    """Waits for a person's answer (an int), then says it."""
    number = await session.request_input("how many?", int, timeout=input.get("timeout"))
    return (await session.generate_text(prompt=f"got {number}")).text


async def charge_then_slow(session: agtl.Session, input: dict[str, Any]) -> list[str]:
    """A tool with a side effect (a line in the ledger file, with its idempotency key), then
    a slow call: a worker killed during the slow call must not charge again."""
    charge = charge_tool(input["ledger"])
    paid = await session.generate_text(prompt="pay 5", tools=[charge], tool_choice="charge")
    slow = await session.generate_text(prompt="slow after the charge")
    return [paid.text, slow.text]


async def pay_twice(session: agtl.Session, input: dict[str, Any]) -> list[str]:
    """Two side-effecting tool calls between slow model calls (the crash fuzz kills its
    worker anywhere in them): each charge is a ledger line with its idempotency key. With
    ``"approve": n``, the charge of n waits for a person's approval first."""
    wanted = input.get("approve")
    charge = charge_tool(
        input["ledger"], needs_approval=lambda arguments: arguments["amount"] == wanted
    )
    texts = []
    for prompt in ("pay 1", "slow middle", "pay 2", "slow end"):
        tools = [charge] if prompt.startswith("pay") else None
        choice = "charge" if tools else None
        reply = await session.generate_text(prompt=prompt, tools=tools, tool_choice=choice)
        texts.append(reply.text)
    return texts


@agtl.tool
def note(topic: str) -> str:
    """The team's note on a topic."""
    return f"note on {topic}"


def _two_agents(helper: str, helper_call: agtl.ToolCallRequest) -> agtl.Provider:
    """A planner that asks ``helper`` once (with its prompt); the helper makes
    ``helper_call`` once; each then says what its tool said."""

    def respond(request: agtl.GenerationRequest) -> Reply:
        system, last = request.messages[0].content, request.messages[-1]
        who = "planner" if system.startswith("You plan") else helper
        if last.role is agtl.Role.TOOL:
            return Reply(f"{who} says: {last.content}", usage=agtl.Usage(5, 4))
        call = helper_call
        if who == "planner":
            call = agtl.ToolCallRequest("p1", helper, {"task": last.content})
        return Reply("", tool_calls=[call], usage=agtl.Usage(5, 1))

    return ScriptedProvider(respond=respond)


def team_model() -> agtl.Provider:
    """A planner that asks the researcher once; a researcher that reads a note once."""
    return _two_agents("researcher", agtl.ToolCallRequest("r1", "note", {"topic": "capital?"}))


researcher = agtl.Agent("researcher", "You research, with notes.", tools=[note])
team = agtl.Agent("planner", "You plan, and ask the researcher.", tools=[researcher.as_tool()])
team_workflow = team.workflow


def cashier_team_model() -> agtl.Provider:
    """A planner that asks the cashier; a cashier that charges 9 (which needs approval)."""
    return _two_agents("cashier", agtl.ToolCallRequest("c1", "charge", {"amount": 9}))


async def cashier_team(session: agtl.Session, input: dict[str, Any]) -> str:
    """A planner whose sub-agent charges through a tool that needs approval."""
    cashier = agtl.Agent(
        "cashier", "You take payments.", tools=[charge_tool(input["ledger"], needs_approval=True)]
    )
    planner = agtl.Agent("planner", "You plan, and ask the cashier.", tools=[cashier.as_tool()])
    return str((await planner.run(session, "pay")).output)
