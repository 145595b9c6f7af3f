"""Racing executions: the first to succeed wins and the others are cancelled."""

from __future__ import annotations

from typing import Any

import trio

from agtl.errors import InvalidArgumentError
from agtl.execution import Execution
from agtl.result import Result, Status
from agtl.validation import check_items, require_trio

__all__ = ["race"]


async def race(*executions: Execution[Any]) -> Result[Any]:
    """Run (or wait for) every execution; the first to succeed wins.

    As soon as one succeeds the others are cancelled (source ``handle``, reason "lost the
    race"), and ``race`` returns after they all finished, with the winner's Result. The
    losers' Results stay on their handles (``execution.outcome``).

    If none succeeds, the Result of the first execution (in argument order) that failed is
    returned, or, when all were canceled, the first one's: a failure says more than a cancel.
    Executions not yet started run inside ``race``; started ones are awaited.
    """
    require_trio("agtl.race()")
    check_items("executions", executions, Execution, "an agtl execution")
    if len({id(e) for e in executions}) != len(executions):
        raise InvalidArgumentError("executions", "the same execution was passed twice")

    winner: list[Execution[Any]] = []

    async def run_one(execution: Execution[Any]) -> None:
        result = await execution.result()
        if result.status is Status.SUCCEEDED and not winner:
            winner.append(execution)
            for other in executions:
                if other is not execution:
                    other.cancel(f"lost the race to execution {execution.execution_id}")

    async with trio.open_nursery() as nursery:
        for execution in executions:
            nursery.start_soon(run_one, execution)

    if winner:
        outcome = winner[0].outcome
    else:
        outcomes = [e.outcome for e in executions]
        failed = [r for r in outcomes if r is not None and r.status is Status.FAILED]
        outcome = failed[0] if failed else outcomes[0]
    assert outcome is not None
    return outcome
