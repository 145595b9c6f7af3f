"""The tool loop: model call, tool calls, results back, again, until the model answers.

One implementation serves ``generate_text(tools=...)`` (which runs it to the end) and
``stream_text(tools=...)`` (whose consumer reads it as it goes). It is an async generator of
:class:`TextPart`, :class:`ToolCallStarted`, :class:`ToolProgress` and
:class:`ToolCallFinished`, driven by whoever reads it. A step's tool calls run as one task of
the nursery the stream opens when it is entered (see :mod:`agtl._tool_runner`); while they
run, the generator yields the progress they report, read from a channel, and it never opens a
nursery or cancel scope of its own. The ``started`` parts come just before the step's calls
start and the ``finished`` parts once all of them ended.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Final

import attrs
import trio

from agtl._call import TextStream, open_call
from agtl._call_spec import CallSpec
from agtl._context import ExecutionContext
from agtl._groups import is_cancellation
from agtl._held import HeldNursery
from agtl._replies import Step, TextResult
from agtl._state import current_agent
from agtl._tool_runner import ChildPart, StepRunner, ToolOutcome, ToolProgress
from agtl._vocabulary import ToolCallStatus
from agtl.errors import ExecutionClosedError, ToolLoopError
from agtl.messages import Message, Role, ToolCallRequest
from agtl.summary import ToolCall

__all__ = [
    "Part",
    "TextPart",
    "ToolCallFinished",
    "ToolCallStarted",
    "ToolLoopStream",
    "ToolProgress",
]


#: What the model is told for each tool call a loop out of steps did not run.
NOT_RUN: Final = "Not run: the tool call limit was reached."


@attrs.frozen
class TextPart:
    """Text of the current model call."""

    text: str


@attrs.frozen
class ToolCallStarted:
    """The model asked for this call; it is about to run (step = the model call's index)."""

    request: ToolCallRequest
    step: int


@attrs.frozen
class ToolCallFinished:
    """A tool call ended; ``call`` is its summary record (status, result or error)."""

    call: ToolCall


Part = TextPart | ToolCallStarted | ToolProgress | ChildPart | ToolCallFinished


class ToolLoopStream:
    """A tool loop read as it goes: ``stream_text(..., tools=...)``.

    ``async for delta in stream`` gives the text of every model call; ``stream.parts()``
    gives text and tool calls (:class:`TextPart`, :class:`ToolCallStarted`,
    :class:`ToolCallFinished`). Read one or the other. Afterwards ``stream.result`` is the
    final :class:`~agtl.TextResult`, with its ``steps``.
    """

    def __init__(
        self,
        ctx: ExecutionContext,
        spec: CallSpec,
        session: object,
        *,
        live_progress: bool = True,
    ) -> None:
        use = spec.tools
        assert use is not None
        self._ctx = ctx
        self._spec = spec
        self._use = use
        self._runner = StepRunner(
            tools=use.by_name, ctx=ctx, session=session, raise_errors=use.raise_errors
        )
        self._history = [] if spec.messages is None else list(spec.messages)
        self._conversation = spec.conversation
        self._max_steps = use.max_steps
        self._answer_only = use.choice == "none"  # a call asked for is not run
        self._called: set[str] = set()  # the tools this loop has run (for "each")
        self._cancellation = ctx.cancellation
        # Whether the tools' progress is yielded while they run (a reader wants parts), which
        # needs the step to run as a task; generate_text runs it inline instead.
        self._live_progress = live_progress
        self._result: TextResult | None = None
        self._parts: AsyncIterator[Part] | None = None
        self._text: list[str] = []
        # The nursery a step's tool calls (and guardrails) run in, entered with the stream.
        self._held = HeldNursery()
        self._nursery: trio.Nursery | None = None

    @property
    def text(self) -> str:
        """The text of every model call so far."""
        return "".join(self._text)

    @property
    def result(self) -> TextResult:
        """The final model call's :class:`~agtl.TextResult`, with every step."""
        if self._result is None:
            raise ExecutionClosedError(
                "stream.result is only available after the stream was read to its end"
            )
        return self._result

    async def __aenter__(self) -> ToolLoopStream:
        if self._parts is not None:
            raise ExecutionClosedError("a tool loop stream can be entered only once")
        if self._live_progress or self._spec.guards is not None:
            self._nursery = await self._held.enter()  # left on every path by __aexit__
        self._parts = self._run()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._close_parts()
        finally:
            # Left early, or an error: a step still running has no reader any more.
            await self._held.leave(exc, cancel=self._result is None)

    async def _close_parts(self) -> None:
        parts = self._parts
        if parts is not None and hasattr(parts, "aclose"):
            await parts.aclose()

    def parts(self) -> AsyncIterator[Part]:
        """Every part of the loop: text, tool calls starting, tool calls finished."""
        if self._parts is None:
            raise ExecutionClosedError(
                "iterate a stream inside `async with session.stream_text(...) as stream:`"
            )
        return self._parts

    def __aiter__(self) -> AsyncIterator[str]:
        return self._texts()

    async def _texts(self) -> AsyncIterator[str]:
        async for part in self.parts():
            if isinstance(part, TextPart):
                yield part.text

    def _open_step(self, number: int, history: list[Message]) -> TextStream:
        """Model call ``number`` of the loop, on the history so far (messages agtl made are
        not checked again); with a conversation, the prompt is the first call's user turn.
        ``tool_choice`` applies to the first call; later ones may answer in text."""
        spec, conversation = self._spec, self._conversation
        step = attrs.evolve(
            spec,
            messages=tuple(history) if conversation is None else None,
            prompt=spec.prompt if conversation is not None and number == 0 else None,
            guards=spec.guards
            if number == 0 or spec.guards is None
            else spec.guards.without_input(),
        )
        return open_call(
            self._ctx,
            step,
            offer=(self._use.specs, self._choice(number)),
            session=self._runner.session,
            nursery=self._nursery,
        )

    def _choice(self, number: int) -> str:
        """``tool_choice`` for model call ``number``: the asked one for the first, "auto"
        after; with "each", every tool not run yet, forced by name in the order given, then
        "none": the model answers in text (a small model on "auto" tends to call again)."""
        if self._use.choice != "each":
            return self._use.choice if number == 0 else "auto"
        waiting = [name for name in self._use.by_name if name not in self._called]
        return waiting[0] if waiting else "none"

    async def _run(self) -> AsyncIterator[Part]:
        steps: list[Step] = []
        history = self._history
        for number in range(self._max_steps):
            stream = self._open_step(number, history)
            async with stream:
                async for delta in stream:
                    self._text.append(delta)
                    yield TextPart(delta)
            reply = stream.result
            if not reply.tool_calls or self._answer_only:
                steps.append(_step(reply, ()))
                self._result = reply.with_steps(tuple(steps))
                return
            history.append(Message(Role.ASSISTANT, reply.text, tool_calls=reply.tool_calls))
            if number == self._max_steps - 1:
                steps.append(_step(reply, ()))
                if self._use.answer_prompt is None:
                    raise ToolLoopError(self._max_steps, tuple(steps), reply.tool_calls)
                async for part in self._answer_at_the_limit(reply, steps):
                    yield part
                return
            for request in reply.tool_calls:
                yield ToolCallStarted(request, reply.call_index)
            outcomes: list[Sequence[ToolOutcome]] = []
            if self._nursery is None or not self._live_progress:
                outcomes.append(await self._run_tools(reply, None))
            else:
                send, receive = trio.open_memory_channel[ToolProgress | ChildPart](math.inf)
                self._nursery.start_soon(self._step, reply, send, outcomes)
                async with receive:
                    async for progress in receive:
                        yield progress
                if not outcomes:
                    # The step failed: its error surfaces from the nursery as the stream exits.
                    await trio.sleep_forever()
            for request, outcome in zip(reply.tool_calls, outcomes[0], strict=True):
                history.append(Message(Role.TOOL, outcome.message, tool_call_id=request.id))
                if self._conversation is not None:
                    self._conversation.add_tool_result(request.id, outcome.message)
            self._called.update(
                outcome.record.name
                for outcome in outcomes[0]
                if outcome.record.status is not ToolCallStatus.INVALID
            )
            steps.append(_step(reply, tuple(outcome.record for outcome in outcomes[0])))
            for outcome in outcomes[0]:
                yield ToolCallFinished(outcome.record)
            if self._use.end_on and any(
                outcome.record.name in self._use.end_on
                and outcome.record.status is ToolCallStatus.OK
                for outcome in outcomes[0]
            ):
                self._result = reply.with_steps(tuple(steps))  # a tool that ends the loop ran
                return
        raise AssertionError("unreachable: the loop returns or raises")

    async def _answer_at_the_limit(
        self, reply: TextResult, steps: list[Step]
    ) -> AsyncIterator[Part]:
        """Out of steps with tools still asked for: tell the model its calls were not run,
        then one last call, with no tool allowed, asks it to answer with what it has."""
        history, conversation = self._history, self._conversation
        prompt = self._use.answer_prompt
        assert prompt is not None
        for request in reply.tool_calls:
            history.append(Message(Role.TOOL, NOT_RUN, tool_call_id=request.id))
            if conversation is not None:
                conversation.add_tool_result(request.id, NOT_RUN)
        history.append(Message(Role.USER, prompt))
        last = attrs.evolve(
            self._spec,
            messages=tuple(history) if conversation is None else None,
            prompt=prompt if conversation is not None else None,
        )
        if last.guards is not None:
            last = attrs.evolve(last, guards=last.guards.without_input())
        stream = open_call(
            self._ctx,
            last,
            offer=(self._use.specs, "none"),
            session=self._runner.session,
            nursery=self._nursery,
        )
        async with stream:
            async for delta in stream:
                self._text.append(delta)
                yield TextPart(delta)
        answer = stream.result
        steps.append(_step(answer, ()))
        self._result = answer.with_steps(tuple(steps))

    async def _step(
        self,
        reply: TextResult,
        progress: trio.MemorySendChannel[ToolProgress | ChildPart],
        outcomes: list[Sequence[ToolOutcome]],
    ) -> None:
        """Run the step's tool calls (a task of the stream's nursery), their progress sent."""

        def forward(part: ToolProgress | ChildPart) -> None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                progress.send_nowait(part)  # nobody reads any more: the summary has it

        async with progress:
            outcomes.append(await self._run_tools(reply, forward))

    async def _run_tools(
        self, reply: TextResult, progress: Callable[[ToolProgress | ChildPart], None] | None
    ) -> Sequence[ToolOutcome]:
        try:
            return await self._runner.run(reply.tool_calls, reply.call_index, progress)
        except BaseException as exc:
            if self._conversation is not None:
                # The calls stay unanswered (the model is not sent them again); a marker says
                # why the turn stopped.
                turn = self._conversation.begin_turn(None)
                if is_cancellation(exc):
                    turn.stop(self._cancellation.reason or "stopped while tools ran")
                else:
                    turn.fail(exc)
            raise


def _step(reply: TextResult, calls: tuple[ToolCall, ...]) -> Step:
    agent = current_agent.get()
    return Step(reply.call_index, reply.text, calls, reply.stop_reason, reply.usage, agent)
