"""The attempts of one call that several backends may serve (a fallback chain, a hedge).

Each attempt is kept with the backend and model it went to, how it ended (``answered``,
``error``, ``timeout``, ``lost``, ``cancelled``), its error, when it started (wall clock)
and for how many seconds it ran, its usage and cost, the cost priced by that backend. The
call's report sums the usage and cost of every attempt (``priced``: the core takes the cost
as it is) and lists them in ``details["attempts"]``; its stop reason, model and tool calls
are those of the attempt that answered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import attrs
import trio

from agtl.backend import CallReport, GenerationRequest, GenerationStream, StartGeneration
from agtl.usage import Provenance, Usage

__all__ = ["AttemptLog", "Candidate"]


@attrs.frozen
class Candidate:
    """A backend a call may go to: how to start a call on it and how to price it."""

    name: str
    model: str | None  # the model it is asked for when the call goes to it
    start: StartGeneration
    cost_of: Callable[[str, Usage], Decimal | None]


class AttemptLog:
    """The finished attempts of one call, and the report they add up to."""

    def __init__(self, candidates: tuple[Candidate, ...], request: GenerationRequest) -> None:
        self.candidates = candidates
        self.request = request
        self._rows: list[tuple[dict[str, Any], Usage, Decimal | None]] = []

    def request_for(self, index: int) -> GenerationRequest:
        """The request as backend ``index`` gets it: the first backend the call's model, the
        others their own model (when they have one)."""
        model = self.candidates[index].model
        if index == 0 or model is None:
            return self.request
        return attrs.evolve(self.request, model=model)

    async def close(
        self,
        stream: GenerationStream | None,
        index: int,
        started: float,
        outcome: str,
        error: str | None = None,
    ) -> None:
        """Close an attempt that did not answer (shielded) and keep it."""
        report = None
        if stream is not None:
            with trio.CancelScope(shield=True):
                await stream.aclose()
            report = stream.report()
        self._rows.append(self._row(index, started, outcome, error, report))

    def _row(
        self,
        index: int,
        started: float,
        outcome: str,
        error: str | None,
        report: CallReport | None,
    ) -> tuple[dict[str, Any], Usage, Decimal | None]:
        candidate = self.candidates[index]
        usage = Usage(0, 0, provenance=Provenance.COUNTED) if report is None else report.usage
        model = (report.model if report is not None else None) or self.request_for(index).model
        # An attempt that used nothing cost nothing, whatever its model's price.
        unused = not usage.input_tokens and not usage.output_tokens
        cost = Decimal(0) if unused else candidate.cost_of(model, usage)
        seconds = time.monotonic() - started
        row = {
            "provider": candidate.name,
            "model": model,
            "outcome": outcome,
            "error": error,
            "started_at": time.time() - seconds,  # wall clock, for traces
            "seconds": round(seconds, 6),
            "usage": usage.to_dict(),
            "cost": None if cost is None else str(cost),
        }
        if report is not None and report.details:
            row["details"] = dict(report.details)
        return row, usage, cost

    def report(self, live: GenerationStream | None, index: int, started: float) -> CallReport:
        """The call's report: every attempt kept, plus ``live`` (the one that answered)."""
        rows = list(self._rows)
        answer = None if live is None else live.report()
        if answer is not None:
            rows.append(self._row(index, started, "answered", None, answer))
        usage = Usage(0, 0, provenance=Provenance.COUNTED)
        total: Decimal | None = Decimal(0)
        for _, used, cost in rows:
            usage = usage + used
            total = None if total is None or cost is None else total + cost
        details: dict[str, Any] = {"attempts": [row for row, _, _ in rows]}
        if answer is None:
            return CallReport(usage, None, None, details, priced=True, cost=total)
        return CallReport(
            usage,
            answer.stop_reason,
            answer.model or self.request_for(index).model,
            details,
            tool_calls=answer.tool_calls,
            priced=True,
            cost=total,
        )


def describe(error: BaseException) -> str:
    """An attempt's error as its record says it."""
    return f"{type(error).__name__}: {error}"
