"""An agent whose action waits for a person: the bundled model asks to send money, the host
code reads the request, denies the first one and approves the second.

``@agtl.tool(needs_approval=...)`` makes a call wait, inside the execution, for
``request.approve()`` or ``request.deny(reason)`` (or ``execution.approve(id)`` from any
thread, ``POST /executions/{id}/approvals/{call_id}`` under ``agtl serve``). A denied call never
runs and the model is told why; an approved one runs once, and its record keeps the decision.
"""

from __future__ import annotations

import trio

import agtl
from agtl_llamacpp import LlamaCppProvider

SYSTEM = "You are a helpful assistant."
SENT: list[int] = []  # what actually went out


@agtl.tool(needs_approval=True, approval_timeout=60)
async def send_money(amount: int, to: str) -> str:
    """Send money to someone.

    Args:
        amount: How many euros.
        to: Who gets them.
    """
    SENT.append(amount)
    return f"Sent {amount} euros to {to}."


async def pay(session: agtl.Session) -> str:
    reply = await session.generate_text(
        prompt="Send 20 euros to Alice.",
        system=SYSTEM,
        tools=[send_money],
        tool_choice="each",  # call it once, then answer: a 135M model needs telling
    )
    return reply.text


async def run_once(provider: agtl.Provider, approve: bool) -> agtl.Result[str]:
    execution = provider.simple_execution(pay)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(execution.result)
        async for request in execution.approval_requests():
            print(f"the model wants {request.tool}({request.arguments})")
            if approve:
                request.approve(by="the example")
            else:
                request.deny("not without an invoice", by="the example")
    assert execution.outcome is not None
    return execution.outcome


async def main() -> tuple[agtl.Result[str], agtl.Result[str]]:
    async with LlamaCppProvider().with_default_options(temperature=0, max_tokens=48) as provider:
        denied = await run_once(provider, approve=False)
        approved = await run_once(provider, approve=True)
        for result in (denied, approved):
            for call in result.summary.tool_calls:
                print(f"  {call.name} -> {call.status.value}: {call.error or call.result}")
        print(f"sent: {SENT}")
        return denied, approved


if __name__ == "__main__":
    trio.run(main)
