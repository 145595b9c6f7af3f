"""Typed output that streams: ``session.stream_object(output_type=T)``.

:class:`ObjectStream` reads the model's JSON as it arrives and hands out the value parsed so
far (plain JSON values: a dict holding the members complete so far and the string being
written; see :mod:`agtl._partial_json`) each time it grows. At the end the reply is validated
into ``T`` (``stream.object``); one that does not validate is sent back with what was wrong,
as ``generate_object`` does, and the next attempt streams from an empty value again. Each
partial is kept on the call, so an execution stopped mid-stream keeps the last one in
``Result.partial.object``.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

from agtl._call import TextStream, open_call
from agtl._call_spec import CallSpec
from agtl._context import ExecutionContext
from agtl._held import HeldNursery
from agtl._partial_json import PartialJSON
from agtl._typed_output import OutputSchema, corrected, describe
from agtl.errors import ExecutionClosedError, OutputValidationError

__all__ = ["ObjectStream"]


class ObjectStream:
    """The partial values of a typed reply as it streams; see :meth:`Session.stream_object`."""

    def __init__(
        self,
        ctx: ExecutionContext,
        spec: CallSpec,
        wanted: OutputSchema,
        tries: int,
        *,
        session: object,
        record: Callable[[str, Any], None],
    ) -> None:
        self._ctx = ctx
        self._spec = spec
        self._wanted = wanted
        self._tries = tries
        self._session = session
        self._record = record
        self._attempt = 0
        self._stream: TextStream | None = None
        self._parser: PartialJSON | None = PartialJSON()
        self._partial: Any = None
        self._object: Any = None
        self._done = False
        self._entered = False
        # Where guardrails beside a call run: one nursery for every attempt, entered with the
        # stream and left by __aexit__ (an attempt's call never opens its own).
        self._held = HeldNursery()

    @property
    def partial(self) -> Any:
        """The value parsed so far in the current attempt (``None`` before any)."""
        return self._partial

    @property
    def object(self) -> Any:
        """The reply validated as the output type, once the stream was read to its end."""
        if not self._done:
            raise ExecutionClosedError(
                "stream.object is only available after the stream was read to its end"
            )
        return self._object

    @property
    def text(self) -> str:
        """The current attempt's text so far."""
        return "" if self._stream is None else self._stream.text

    async def __aenter__(self) -> ObjectStream:
        if self._entered:
            raise ExecutionClosedError("an object stream can be entered only once")
        self._entered = True
        if self._spec.guards is not None:
            await self._held.enter()
        try:
            await self._open()
        except BaseException as exc:
            await self._held.leave(exc, cancel=True)
            raise
        return self

    async def _open(self) -> None:
        stream = open_call(self._ctx, self._spec, session=self._session, nursery=self._held.nursery)
        await stream.__aenter__()
        self._stream = stream
        self._parser = PartialJSON()
        self._partial = None

    def __aiter__(self) -> ObjectStream:
        if not self._entered:
            raise ExecutionClosedError(
                "iterate a stream inside `async with session.stream_object(...) as stream:`"
            )
        return self

    async def __anext__(self) -> Any:
        while not self._done:
            stream = self._stream
            assert stream is not None
            try:
                delta = await stream.__anext__()
            except StopAsyncIteration:
                await self._attempt_ended(stream)
                continue
            if self._grows(delta):
                return self._partial
        raise StopAsyncIteration

    def _grows(self, delta: str) -> bool:
        """Feed the parser; whether the partial value changed (kept on the call if so)."""
        if self._parser is None:
            return False  # this attempt's text stopped being JSON
        try:
            changed = self._parser.feed(delta)
        except ValueError:
            self._parser = None  # the validation at the end says what is wrong
            return False
        if changed:
            self._partial = self._parser.snapshot()
            assert self._stream is not None
            self._stream.keep_object(self._partial)
        return changed

    async def _attempt_ended(self, stream: TextStream) -> None:
        """An attempt's reply is complete: validate it, or send it back and try again."""
        self._stream = None
        await stream.__aexit__(None, None, None)
        reply = stream.result
        try:
            self._object = self._wanted.validate(reply.text)
        except ValueError as exc:  # pydantic's ValidationError, or not JSON at all
            problem = describe(exc)
        else:
            self._done = True
            return
        self._attempt += 1
        self._record(
            "generate_object.invalid",
            {"attempt": self._attempt, "call": reply.call_index, "problem": problem},
        )
        if self._attempt > self._tries:
            raise OutputValidationError(self._wanted.name, self._attempt, problem, reply.text)
        self._spec = corrected(self._spec, self._wanted, reply.text, problem)
        await self._open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stream, self._stream = self._stream, None
        try:
            if stream is not None:
                await stream.__aexit__(exc_type, exc, tb)
        finally:
            await self._held.leave(exc, cancel=True)
