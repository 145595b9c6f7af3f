"""Guardrails: checks that run beside a model call and stop it the moment one trips.

A guardrail is a function of the text it guards, ``check(session, text)`` or ``check(text)``,
sync or async, returning a :class:`Verdict`. ``@agtl.guardrail`` makes a :class:`Guardrail`
of one. Pass them to a call as ``input_guardrails=[...]`` (they see the user's input) or
``output_guardrails=[...]`` (they see the reply as it streams), to a tool as
``guardrails=[...]`` (its arguments) or ``result_guardrails=[...]`` (what the model is told
of its result), or to an :class:`~agtl.Agent`.

By default a guardrail runs *beside* the call, as a task of its own in the call's scope: an
input guardrail starts with the call, an output guardrail checks the newest text whenever
it is free. A block cancels the call at once, so no more tokens are paid, and the call
raises :class:`~agtl.GuardrailTripped`. A call does not hand back its result until every
guardrail passed its final text. ``blocking=True`` runs an input guardrail before the call
starts, and an output guardrail on each piece before the reader gets it.

The three built-ins (:func:`redact`, :func:`max_length`, :func:`json_schema`) are examples of
the shapes a guardrail takes, not a policy.
"""

from __future__ import annotations

import enum
import inspect
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, Final, overload

import attrs
import pydantic

from agtl.errors import InvalidArgumentError
from agtl.validation import (
    check_count,
    check_named,
    check_optional_seconds,
    check_str,
    type_name,
)

__all__ = [
    "Guardrail",
    "GuardrailStage",
    "Verdict",
    "check_guardrails",
    "guardrail",
    "json_schema",
    "max_length",
    "redact",
]

#: How often an output guardrail looks at the text: each piece, each finished sentence, or
#: once, at the end.
EVERY: Final = ("chunk", "sentence", "end")
#: What a guardrail that raises or times out does: fail closed (stop the call) or let it be.
ON_ERROR: Final = ("block", "allow")
_NAME: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class GuardrailStage(enum.StrEnum):
    """What a guardrail guarded."""

    INPUT = "input"  # the user's input to a model call
    OUTPUT = "output"  # the model's reply
    TOOL_ARGUMENTS = "tool_arguments"  # a tool call's validated arguments
    TOOL_RESULT = "tool_result"  # what the model is told of a tool call's result


@attrs.frozen
class Verdict:
    """What a guardrail decided: ``ok``, ``block`` (with a reason) or ``rewrite`` (the text
    to use instead; for output checked at the end and for tool results)."""

    action: str
    reason: str | None = None
    text: str | None = None

    @classmethod
    def ok(cls) -> Verdict:
        return _OK

    @classmethod
    def block(cls, reason: str) -> Verdict:
        return cls("block", check_str("reason", reason))

    @classmethod
    def rewrite(cls, text: str, reason: str | None = None) -> Verdict:
        if not isinstance(text, str):
            raise InvalidArgumentError("text", f"must be a str, not {type_name(text)}")
        return cls("rewrite", reason, text)


_OK: Final = Verdict("ok")


@attrs.frozen(eq=False)
class Guardrail:
    """A named check of a text and how it runs (see the module's description).

    ``every`` applies to output guardrails; ``timeout`` bounds each check (``None``: no
    bound); ``on_error`` says what a check that raises or times out means: ``"block"``
    (fail closed, the default) or ``"allow"``.
    """

    name: str
    function: Callable[..., Verdict | Awaitable[Verdict]] = attrs.field(repr=False)
    every: str = "sentence"
    blocking: bool = False
    timeout: float | None = None
    on_error: str = "block"
    #: Whether the function takes the Session first (two parameters) or the text alone.
    takes_session: bool = attrs.field(default=False, repr=False)
    #: Whether it is an ``async def``: only those run beside the call (a plain function
    #: could not let anything run meanwhile, so it runs at once where it is called).
    is_async: bool = attrs.field(default=True, repr=False)

    @property
    def beside(self) -> bool:
        """Whether it runs as a task beside the call (async and not blocking)."""
        return self.is_async and not self.blocking


@overload
def guardrail(
    function: Callable[..., Any],
    /,
    *,
    name: str | None = None,
    every: str = "sentence",
    blocking: bool = False,
    timeout: float | None = None,
    on_error: str = "block",
) -> Guardrail: ...


@overload
def guardrail(
    *,
    name: str | None = None,
    every: str = "sentence",
    blocking: bool = False,
    timeout: float | None = None,
    on_error: str = "block",
) -> Callable[[Callable[..., Any]], Guardrail]: ...


def guardrail(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    every: str = "sentence",
    blocking: bool = False,
    timeout: float | None = None,
    on_error: str = "block",
) -> Guardrail | Callable[[Callable[..., Any]], Guardrail]:
    """Make a :class:`Guardrail` of ``check(session, text)`` or ``check(text)``:
    ``@guardrail`` or ``@guardrail(every="chunk", timeout=2)``. The name defaults to the
    function's."""
    if every not in EVERY:
        raise InvalidArgumentError("every", f"must be one of {', '.join(EVERY)}, not {every!r}")
    if not isinstance(blocking, bool):
        raise InvalidArgumentError("blocking", f"must be True or False, not {blocking!r}")
    seconds = check_optional_seconds("timeout", timeout)
    if on_error not in ON_ERROR:
        raise InvalidArgumentError("on_error", f"must be 'block' or 'allow', not {on_error!r}")
    if name is not None:
        _check_name(name)

    def make(fn: Callable[..., Any]) -> Guardrail:
        if not callable(fn):
            raise InvalidArgumentError("function", f"must be callable, not {type_name(fn)}")
        takes_session = _takes_session(fn)
        label = name
        if label is None:
            label = getattr(fn, "__name__", "")
            if not _NAME.match(label):
                raise InvalidArgumentError(
                    "name", f"the function's name {label!r} cannot name a guardrail: pass name="
                )
        is_async = inspect.iscoroutinefunction(inspect.unwrap(fn))
        return Guardrail(label, fn, every, blocking, seconds, on_error, takes_session, is_async)

    return make if function is None else make(function)


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgumentError(
            "name", f"must be 1 to 64 letters, digits or _.:- characters, not {name!r}"
        )
    return name


def _takes_session(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` is ``check(session, text)`` (True) or ``check(text)`` (False)."""
    try:
        parameters = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
    except (TypeError, ValueError):
        return True  # a builtin with no signature: called the documented way
    if len(parameters) not in (1, 2):
        raise InvalidArgumentError(
            "function",
            f"a guardrail takes (text) or (session, text), not {len(parameters)} parameters",
        )
    return len(parameters) == 2


def check_guardrails(name: str, guardrails: object) -> tuple[Guardrail, ...]:
    """A ``*_guardrails=`` argument: a sequence of :class:`Guardrail` with distinct names."""
    if isinstance(guardrails, list | tuple) and len(guardrails) == 1:
        only: object = guardrails[0]
        if type(only) is Guardrail:
            return (only,)  # the common case, checked without the general walk
    return check_named(name, guardrails, Guardrail, "Guardrail", "guardrail")


# -- the built-in examples ----------------------------------------------------------------------
def redact(
    pattern: str | re.Pattern[str], replacement: str = "[redacted]", *, name: str = "redact"
) -> Guardrail:
    """An example: rewrite every match of ``pattern`` (an e-mail address, a card number) in
    the whole reply, checked at the end (a rewrite cannot take back text already streamed)."""
    compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
    check_str("replacement", replacement, allow_empty=True)

    def check(text: str) -> Verdict:
        changed, count = compiled.subn(replacement, text)
        if count == 0:
            return _OK
        return Verdict.rewrite(changed, f"{count} {'match' if count == 1 else 'matches'}")

    return guardrail(check, name=name, every="end")


def max_length(chars: int, *, name: str = "max_length") -> Guardrail:
    """An example: block a text longer than ``chars`` characters, checked on each piece."""
    limit = check_count("chars", chars, minimum=1)

    def check(text: str) -> Verdict:
        if len(text) <= limit:
            return _OK
        return Verdict.block(f"the text is longer than {limit} characters")

    return guardrail(check, name=name, every="chunk")


def json_schema(output_type: Any, *, name: str = "json_schema") -> Guardrail:
    """An example: block a reply that is not JSON matching ``output_type`` (a pydantic model,
    a TypedDict, a plain type), checked at the end."""
    try:
        adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(output_type)
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError) as exc:
        first = str(exc).splitlines()[0]
        raise InvalidArgumentError(
            "output_type", f"{output_type!r} is not a type: {first}"
        ) from None

    def check(text: str) -> Verdict:
        try:
            adapter.validate_python(json.loads(text, strict=False))
        except ValueError as exc:  # not JSON, or pydantic's ValidationError
            first = str(exc).splitlines()[0]
            return Verdict.block(f"not JSON of the expected shape: {first}")
        return _OK

    return guardrail(check, name=name, every="end")
