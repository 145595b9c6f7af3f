"""Typed output: JSON the model writes under a schema, validated into a Python value.

``session.generate_object(output_type=T)`` derives T's JSON schema with pydantic, asks for
JSON matching it (the local model is constrained by a grammar built from the schema, a
remote server gets ``response_format``), validates the reply, and sends the validation
errors back to the model up to ``retries`` times. Every attempt is an LLM call of its own in
the summary.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, Final

import attrs
import pydantic

from agtl._call_spec import CallSpec
from agtl._replies import TextResult
from agtl.errors import InvalidArgumentError, OutputValidationError
from agtl.messages import Message, Role
from agtl.tools import describe_errors
from agtl.validation import check_count

__all__ = [
    "NotJSONError",
    "OutputSchema",
    "ask_for_object",
    "corrected",
    "describe",
    "object_call",
]

_NAME: Final = re.compile(r"[^A-Za-z0-9_-]+")
#: The arguments of a tool loop, which the typed-output calls (no tools) refuse.
LOOP_ONLY: Final = (
    *("tools", "tool_choice", "max_steps", "tool_errors"),
    *("approval_timeout", "on_max_steps", "max_steps_prompt", "end_on"),
)


@attrs.frozen
class OutputSchema:
    """A type the model is asked to produce, with its schema and its validator."""

    name: str
    schema: dict[str, Any]
    _adapter: pydantic.TypeAdapter[Any] = attrs.field(alias="adapter", repr=False)

    @classmethod
    def of(cls, output_type: Any) -> OutputSchema:
        try:
            adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(output_type)
            schema = adapter.json_schema()
        except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError) as exc:
            first = str(exc).splitlines()[0]
            raise InvalidArgumentError(
                "output_type", f"{output_type!r} has no JSON schema: {first}"
            ) from None
        except TypeError as exc:
            raise InvalidArgumentError("output_type", f"not a type: {exc}") from None
        label = getattr(output_type, "__name__", None) or str(output_type)
        return cls(_NAME.sub("_", label)[:64] or "output", schema, adapter=adapter)

    def response_format(self) -> dict[str, Any]:
        return {"type": "json_schema", "json_schema": {"name": self.name, "schema": self.schema}}

    def validate(self, text: str) -> Any:
        """The value ``text`` holds; raises ``ValueError`` (pydantic's, for a value that does
        not match) if it does not. Control characters inside strings are accepted: small
        models write raw newlines there, and the meaning is plain."""
        try:
            data = json.loads(text.strip() or "null", strict=False)
        except ValueError as exc:
            raise NotJSONError(f"not valid JSON ({exc})") from None
        return self._adapter.validate_python(data)


def corrected(spec: CallSpec, wanted: OutputSchema, text: str, problem: str) -> CallSpec:
    """The next attempt after the reply ``text`` did not validate: the reply and what was
    wrong with it added (as turns, in a conversation, which holds the reply already)."""
    correction = (
        f"That reply is not valid: {problem}. Reply again with only JSON "
        f"matching the schema {json.dumps(wanted.schema)}."
    )
    if spec.guards is not None:  # the input was checked by the first attempt
        spec = attrs.evolve(spec, guards=spec.guards.without_input())
    if spec.conversation is not None:
        return attrs.evolve(spec, prompt=correction)
    assert spec.messages is not None
    history = (Message(Role.ASSISTANT, text), Message(Role.USER, correction))
    return attrs.evolve(spec, messages=spec.messages + history)


class NotJSONError(ValueError):
    """The reply is not JSON at all."""


def describe(error: ValueError) -> str:
    """The validation errors in a line the model can act on."""
    if not isinstance(error, pydantic.ValidationError):
        return str(error)
    return describe_errors(error, whole="the value")


async def ask_for_object(
    spec: CallSpec,
    wanted: OutputSchema,
    tries: int,
    *,
    generate: Callable[[CallSpec], Awaitable[TextResult]],
    record: Callable[[str, Any], None],
) -> Any:
    """Ask with ``spec`` (its ``response_format`` set from ``wanted``) until a reply validates:
    an invalid one is recorded and sent back with what was wrong, ``tries`` times at most;
    then :class:`~agtl.OutputValidationError`. In a conversation every attempt and every
    correction is a turn; otherwise they extend the call's history."""
    problem, text = "", ""
    for attempt in range(tries + 1):
        reply = await generate(spec)
        text = reply.text
        try:
            return wanted.validate(text)
        except ValueError as exc:  # pydantic's ValidationError, or not JSON at all
            problem = describe(exc)
        record(
            "generate_object.invalid",
            {"attempt": attempt + 1, "call": reply.call_index, "problem": problem},
        )
        spec = corrected(spec, wanted, text, problem)
    raise OutputValidationError(wanted.name, tries + 1, problem, text)


def object_call(
    entry: str, output_type: Any, retries: int, options: dict[str, Any], **call: Any
) -> tuple[OutputSchema, int, CallSpec]:
    """The checked arguments of ``generate_object`` and ``stream_object``: the output type,
    the number of retries, and the call asking for JSON of that type."""
    wanted = OutputSchema.of(output_type)
    tries = check_count("retries", retries)
    if "response_format" in options:
        raise InvalidArgumentError(
            "response_format", f"{entry} sets it from output_type: leave it out"
        )
    for loop_only in LOOP_ONLY:
        if loop_only in options:
            raise InvalidArgumentError(
                loop_only,
                f"{entry} runs no tools: run the tool loop with "
                "generate_text(tools=...) first, then ask for the object with its answer "
                "in the prompt or the same conversation=",
            )
    spec = CallSpec.of(**call, options={**options, "response_format": wanted.response_format()})
    return wanted, tries, spec
