"""Running guardrails: beside a model call, in order at its end, and around a tool call.

:class:`CallGuard` is one model call's guardrails while it runs. The call (``_call``) asks it
to run the blocking input guardrails before it starts, starts the others as tasks of a
nursery the call's opener entered (so a cancel of the execution reaches them, and the call's
end cancels them), reads the backend inside the guard's read scope (a trip cancels that
scope: the read ends at once and the call raises), feeds it each piece of text, and at the
end waits for every guardrail's verdict on the final text and runs the ``every="end"`` ones
in order (each rewrite feeds the next). :func:`guard_text` runs guardrails in order on one
text: a blocking input, a tool's arguments, a tool's result.

Every guardrail's run leaves one :class:`~agtl.GuardrailRecord` in the summary, written when
the call closes, whatever ended it.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Final

import attrs
import trio

from agtl._context import ExecutionContext
from agtl._observe import NO_TRACE, Trace
from agtl._state import CallState, current_guardrail
from agtl.errors import GuardrailTripped
from agtl.guardrails import Guardrail, GuardrailStage, Verdict
from agtl.summary import GuardrailRecord
from agtl.validation import type_name

__all__ = ["CallGuard", "Guards", "guard_text"]

#: What ends a sentence for ``every="sentence"``.
_SENTENCE_ENDS: Final = frozenset(".!?\n")


@attrs.frozen
class Guards:
    """A call's guardrails: on its input, on its output."""

    input: tuple[Guardrail, ...] = ()
    output: tuple[Guardrail, ...] = ()

    def without_input(self) -> Guards | None:
        """The guards of a later call of the same loop: the input was checked by the first."""
        return attrs.evolve(self, input=()) if self.output else None


@attrs.define
class _Run:
    """One guardrail's run on one text."""

    guardrail: Guardrail
    stage: GuardrailStage
    started_at: float
    verdict: str | None = None
    reason: str | None = None
    at: float = 0.0
    checks: int = 0
    tripped: bool = False
    #: The text it checked last (a chunk guardrail's progress).
    seen: int = 0
    scope: trio.CancelScope | None = None
    trace: Trace = NO_TRACE

    def record(self, call: CallState | None, tool_call_id: str | None = None) -> GuardrailRecord:
        paid = None
        if self.tripped and call is not None and call.usage is not None:
            paid = call.usage.output_tokens
        return GuardrailRecord(
            name=self.guardrail.name,
            stage=self.stage.value,
            verdict=self.verdict or "cancelled",
            reason=self.reason,
            started_at=self.started_at,
            at=self.at,
            call=None if call is None else call.index,
            tripped=self.tripped,
            tokens_paid=paid,
            checks=self.checks,
            tool_call_id=tool_call_id,
        )


async def _check(session: object, run: _Run, text: str, *, may_rewrite: bool) -> Verdict:
    """One check of ``text``: its verdict, or an ``error`` verdict if it raised, timed out,
    returned no Verdict, or rewrote where no rewrite is possible. A cancel propagates."""
    guardrail = run.guardrail
    run.checks += 1
    naming = current_guardrail.set(guardrail.name)  # its own model calls are recorded as its
    try:
        if guardrail.timeout is None:  # no scope when there is no bound: it costs per check
            verdict = await _call(guardrail, session, text)
        else:
            with trio.move_on_after(guardrail.timeout) as bound:
                verdict = await _call(guardrail, session, text)
            if bound.cancelled_caught:
                return Verdict(
                    "error", f"did not decide within its timeout of {guardrail.timeout:g}s"
                )
    except Exception as exc:
        return Verdict("error", f"raised {type(exc).__name__}: {exc}")
    finally:
        current_guardrail.reset(naming)
    if not isinstance(verdict, Verdict):
        return Verdict("error", f"returned {type_name(verdict)}, not an agtl.Verdict")
    if verdict.action == "rewrite" and not may_rewrite:
        where = (
            "of a model call's input or a tool's arguments"
            if run.stage in (GuardrailStage.INPUT, GuardrailStage.TOOL_ARGUMENTS)
            else "before the whole text was in (a rewrite needs every='end')"
        )
        return Verdict("error", f"asked for a rewrite {where}, where none is possible")
    return verdict


async def _call(guardrail: Guardrail, session: object, text: str) -> Any:
    verdict: Any = guardrail.function(*((session, text) if guardrail.takes_session else (text,)))
    if guardrail.is_async or inspect.isawaitable(verdict):
        verdict = await verdict
    return verdict


def _trips(run: _Run, verdict: Verdict) -> bool:
    """Whether ``verdict`` stops the call (a block, or an error that fails closed)."""
    if verdict.action == "block":
        return True
    return verdict.action == "error" and run.guardrail.on_error == "block"


def _decide(ctx: ExecutionContext, run: _Run, verdict: Verdict) -> None:
    run.verdict = verdict.action
    run.reason = verdict.reason
    run.at = ctx.state.elapsed()


async def guard_text(
    ctx: ExecutionContext,
    session: object,
    guardrails: Sequence[Guardrail],
    stage: GuardrailStage,
    text: str,
    *,
    call: CallState | None = None,
    tool_call_id: str | None = None,
    keep: list[_Run] | None = None,
) -> str:
    """Run ``guardrails`` on ``text`` in order, each on the previous one's rewrite; record
    each run (or, with ``keep``, leave it there for its call to record when it closes); the
    final text, or :class:`~agtl.GuardrailTripped` on the first that trips."""
    may_rewrite = stage in (GuardrailStage.OUTPUT, GuardrailStage.TOOL_RESULT)
    parent = ctx.state.trace if call is None else call.trace
    for guardrail in guardrails:
        run = _Run(guardrail, stage, ctx.state.elapsed())
        run.trace = parent.guardrail(guardrail.name, stage.value)
        try:
            verdict = await _check(session, run, text, may_rewrite=may_rewrite)
            _decide(ctx, run, verdict)
            if _trips(run, verdict):
                run.tripped = True
                raise _tripped(run, call)
            if verdict.action == "rewrite" and verdict.text is not None:
                text = verdict.text
        finally:
            if keep is None:
                _close(ctx, run, call, tool_call_id)
            else:
                keep.append(run)
    return text


def _tripped(run: _Run, call: CallState | None) -> GuardrailTripped:
    return GuardrailTripped(
        run.guardrail.name,
        run.stage.value,
        run.verdict or "error",
        run.reason,
        None if call is None else call.index,
    )


def _close(
    ctx: ExecutionContext, run: _Run, call: CallState | None, tool_call_id: str | None = None
) -> None:
    record = run.record(call, tool_call_id)
    ctx.state.add_guardrail(record)
    run.trace.guardrail_finished(record)


class CallGuard:
    """One model call's guardrails while the call runs (see the module's description)."""

    __slots__ = (
        "_call",
        "_ctx",
        "_final",
        "_guards",
        "_input_text",
        "_lot",
        "_owned",
        "_reading",
        "_runs",
        "_sentence_version",
        "_session",
        "_settled",
        "_version",
        "error",
    )

    def __init__(
        self, ctx: ExecutionContext, session: object, guards: Guards, input_text: str
    ) -> None:
        self._ctx = ctx
        self._session = session
        self._guards = guards
        self._input_text = input_text
        self._call: CallState | None = None
        self._runs: list[_Run] = []  # the guardrails running beside the call
        # Output guardrails beside the call wait here for more text (made when one starts).
        self._lot: trio.lowlevel.ParkingLot | None = None
        self._version = 0  # bumped by each piece of text (and once more at the end)
        self._sentence_version = 0  # the version of the last piece that ended a sentence
        self._final = False
        self._settled = trio.Event()
        self._reading: trio.CancelScope | None = None
        self._owned = False
        #: The trip that stops the call (the first one), raised by the reader.
        self.error: GuardrailTripped | None = None

    @property
    def needs_tasks(self) -> bool:
        """Whether some guardrail runs beside the call (the opener must lend a nursery)."""
        return any(g.beside for g in self._guards.input) or any(
            g.beside and g.every != "end" for g in self._guards.output
        )

    async def before(self) -> None:
        """Run the input guardrails that do not run beside the call, before it starts."""
        at_once = [g for g in self._guards.input if not g.beside]
        if at_once:
            await guard_text(
                self._ctx, self._session, at_once, GuardrailStage.INPUT, self._input_text
            )

    def start(self, nursery: trio.Nursery | None, call: CallState, *, owned: bool) -> None:
        """The call began: start the guardrails that run beside it, in ``nursery`` (the
        call's ``owned`` one, which it cancels as it leaves, or a nursery lent to it, where
        each task gets a scope of its own to end it with the call)."""
        self._call = call
        self._owned = owned
        now = self._ctx.state.elapsed()
        for guardrail in self._guards.input:
            if guardrail.beside:
                self._spawn(nursery, _Run(guardrail, GuardrailStage.INPUT, now), self._input)
        for guardrail in self._guards.output:
            if guardrail.beside and guardrail.every != "end":
                if self._lot is None:
                    self._lot = trio.lowlevel.ParkingLot()
                self._spawn(nursery, _Run(guardrail, GuardrailStage.OUTPUT, now), self._output)
        if not self._runs:
            self._settled.set()

    async def let_start(self) -> None:
        """Let the guardrails beside the call begin before the call's first read: one that
        decides at once (a cached verdict, a quick rule) then needs no read to be guarded."""
        if self._runs:
            await trio.lowlevel.checkpoint()

    def _spawn(self, nursery: trio.Nursery | None, run: _Run, task: Any) -> None:
        assert nursery is not None, "a guardrail beside the call needs the opener's nursery"
        assert self._call is not None
        if not self._owned:
            run.scope = trio.CancelScope()
        run.trace = self._call.trace.guardrail(run.guardrail.name, run.stage.value)
        self._runs.append(run)
        nursery.start_soon(task, run, name=f"agtl-guardrail-{run.guardrail.name}")

    async def _input(self, run: _Run) -> None:
        if run.scope is None:
            await self._check_input(run)
            return
        with run.scope:
            await self._check_input(run)

    async def _check_input(self, run: _Run) -> None:
        verdict = await _check(self._session, run, self._input_text, may_rewrite=False)
        self._settle(run, verdict)

    async def _output(self, run: _Run) -> None:
        if run.scope is None:
            await self._watch_output(run)
            return
        with run.scope:
            await self._watch_output(run)

    async def _watch_output(self, run: _Run) -> None:
        """Check the newest text whenever there is more (each piece, or each sentence), and
        the final text; settle on the first verdict that is not ``ok``."""
        assert self._call is not None
        call, every = self._call, run.guardrail.every
        while True:
            target = self._version if every == "chunk" or self._final else self._sentence_version
            if target > run.seen:
                run.seen = self._version
                verdict = await _check(self._session, run, call.text, may_rewrite=False)
                if verdict.action != "ok":
                    self._settle(run, verdict)
                    return
            elif self._final:
                self._settle(run, Verdict.ok())
                return
            else:
                assert self._lot is not None
                await self._lot.park()

    def _settle(self, run: _Run, verdict: Verdict) -> None:
        """A guardrail beside the call decided; a trip stops the call's read at once."""
        _decide(self._ctx, run, verdict)
        if _trips(run, verdict) and self.error is None:
            run.tripped = True
            self.error = _tripped(run, self._call)
            if self._reading is not None:
                self._reading.cancel()
        if self.error is not None or all(r.verdict is not None for r in self._runs):
            self._settled.set()

    @property
    def waiting(self) -> bool:
        """Whether a guardrail beside the call has not decided yet (a trip may come)."""
        return not self._settled.is_set()

    def reading(self) -> trio.CancelScope:
        """The scope the reader waits on the backend in: a trip cancels it."""
        scope = self._reading = trio.CancelScope()
        if self.error is not None:
            scope.cancel()
        return scope

    def check_tripped(self) -> None:
        """Raise the trip, if a guardrail tripped."""
        self._reading = None
        if self.error is not None:
            raise self.error

    async def piece(self, call: CallState, delta: str) -> None:
        """A piece arrived (``call`` does not hold it yet): the blocking output guardrails
        check the text with it before the reader gets it; the others are woken."""
        for guardrail in self._guards.output:
            if not guardrail.beside and (
                guardrail.every == "chunk"
                or (guardrail.every == "sentence" and not _SENTENCE_ENDS.isdisjoint(delta))
            ):
                await self._inline(guardrail, call.text + delta)
        self._version += 1
        if not _SENTENCE_ENDS.isdisjoint(delta):
            self._sentence_version = self._version
        if self._lot is not None:
            self._lot.unpark_all()

    async def _inline(self, guardrail: Guardrail, text: str) -> None:
        """A blocking output guardrail's check, kept as one run across the call's pieces."""
        run = next((r for r in self._runs if r.guardrail is guardrail), None)
        if run is None:
            run = _Run(guardrail, GuardrailStage.OUTPUT, self._ctx.state.elapsed())
            assert self._call is not None
            run.trace = self._call.trace.guardrail(guardrail.name, run.stage.value)
            run.verdict = "ok"  # decided by this reader, never waited for
            self._runs.append(run)
        verdict = await _check(self._session, run, text, may_rewrite=False)
        if verdict.action != "ok":
            self._settle(run, verdict)
            self.check_tripped()

    async def end(self, call: CallState) -> str | None:
        """The backend is done: wait for every verdict on the final text, then run the
        ``every="end"`` guardrails in order. The rewritten text, if one rewrote it."""
        self._final = True
        self._version += 1
        if self._lot is not None:
            self._lot.unpark_all()
        for guardrail in self._guards.output:
            if not guardrail.beside and guardrail.every == "sentence":
                await self._inline(guardrail, call.text)  # the last sentence
        if not self._settled.is_set():
            with self.reading():
                await self._settled.wait()
        self.check_tripped()
        ending = [g for g in self._guards.output if g.every == "end"]
        if not ending:
            return None
        text = await guard_text(
            self._ctx,
            self._session,
            ending,
            GuardrailStage.OUTPUT,
            call.text,
            call=call,
            keep=self._runs,
        )
        return None if text == call.text else text

    def close(self) -> None:
        """The call ended: stop the guardrails still running, and record every run."""
        for run in self._runs:
            if run.scope is not None:
                run.scope.cancel()
            _close(self._ctx, run, self._call)
        self._runs.clear()
