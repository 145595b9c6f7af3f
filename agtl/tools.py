"""Tools the model may call: a typed Python function plus the JSON schema the model sees.

``@agtl.tool`` turns an ``async def`` or a plain ``def`` with type hints and a docstring into
a :class:`Tool`: its name, description and a JSON schema of its parameters are derived once,
at definition time, with pydantic (which also validates the arguments the model sends). A
definition that cannot work (a parameter without a type hint, a type with no JSON schema,
``*args``) fails right there with :class:`~agtl.InvalidArgumentError`, not when the model
first calls it.

A tool may take the execution's :class:`~agtl.Session` as its first parameter (annotated
``Session``) to emit events or record costs; it is not part of the schema.
"""

from __future__ import annotations

import contextvars
import inspect
import json
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, overload

import attrs
import pydantic

from agtl._vocabulary import SessionType
from agtl.backend import ToolSpec
from agtl.errors import InvalidArgumentError, NotInToolError, ToolArgumentsError
from agtl.guardrails import Guardrail, check_guardrails
from agtl.validation import (
    check_count,
    check_named,
    check_optional_seconds,
    check_str,
    type_name,
)

__all__ = [
    "Tool",
    "ToolCallInfo",
    "check_tools",
    "current_tool_call",
    "describe_errors",
    "report_progress",
    "tool",
]

#: Where :func:`report_progress` goes: set by the tool runner for each call it runs.
progress_hook: contextvars.ContextVar[Callable[[float, float | None, str | None], None] | None] = (
    contextvars.ContextVar("agtl_tool_progress", default=None)
)


#: Where a running tool sends the parts of a sub-agent it runs (its name, the part), to the
#: loop reading the calling step's parts; ``None`` when nobody reads them.
part_hook: contextvars.ContextVar[Callable[[str, Any], None] | None] = contextvars.ContextVar(
    "agtl_tool_parts", default=None
)


@attrs.frozen
class ToolCallInfo:
    """The tool call running now, as its tool sees it (:func:`current_tool_call`).

    ``idempotency_key`` is the same in every attempt of the same execution (a Temporal retry
    after a crash, or a journal's next attempt): pass it to an API that takes one (a payment,
    an email) and the side effect happens once even when the call runs again.
    """

    name: str
    call_id: str | None
    execution_id: str
    #: The call's place among the tool calls its execution started (0, 1, ...).
    ordinal: int
    idempotency_key: str


#: The call :func:`current_tool_call` returns: set by the tool runner for each call it runs.
current_call: contextvars.ContextVar[ToolCallInfo | None] = contextvars.ContextVar(
    "agtl_tool_call", default=None
)


def current_tool_call() -> ToolCallInfo:
    """From inside a running tool (also a sync one, in its thread): which call this is, with
    its idempotency key. Raises :class:`~agtl.NotInToolError` elsewhere."""
    info = current_call.get()
    if info is None:
        raise NotInToolError(
            "agtl.current_tool_call() is only available inside a tool the tool loop runs"
        )
    return info


def report_progress(
    progress: float, total: float | None = None, message: str | None = None
) -> None:
    """From inside a running tool (also a sync one, in its thread): how far it got.

    The summary records it (kind ``tool.progress``) and a streaming tool loop yields it as a
    :class:`~agtl.ToolProgress` part, which a workflow can forward as an event. Outside a
    tool call it does nothing.
    """
    sink = progress_hook.get()
    if sink is not None:
        sink(progress, total, message)


#: OpenAI's rule for function names, which every backend we know accepts.
_NAME: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_DEFAULT_RETRIES: Final = 2


@attrs.frozen(eq=False)
class Tool:
    """A function the model may call, with what the model is told about it.

    Make one with :func:`tool`. ``parameters`` is the JSON schema of the arguments (an
    object); ``timeout`` bounds each call in seconds (``None``: no bound); ``retries`` is how
    many times invalid arguments are sent back to the model before the call fails.
    """

    name: str
    description: str
    parameters: Mapping[str, Any]
    function: Callable[..., Any] = attrs.field(repr=False)
    timeout: float | None = None
    retries: int = _DEFAULT_RETRIES
    #: Whether the function's first parameter receives the Session.
    takes_session: bool = False
    #: Whether calling the function returns an awaitable (an ``async def``).
    is_async: bool = True
    #: Whether a call waits for a person's approval first: always, or when this predicate on
    #: the validated arguments says so.
    needs_approval: bool | Callable[[dict[str, Any]], bool] = attrs.field(
        default=False, kw_only=True
    )
    #: Seconds a call waits for its approval before it is denied (``None``: no bound).
    approval_timeout: float | None = attrs.field(default=None, kw_only=True)
    #: Guardrails on a call's validated arguments (before it runs: a block means it never
    #: does) and on what the model is told of its result (a rewrite changes that).
    guardrails: tuple[Guardrail, ...] = attrs.field(default=(), kw_only=True)
    result_guardrails: tuple[Guardrail, ...] = attrs.field(default=(), kw_only=True)
    #: Checks decoded arguments and returns the keyword arguments; raises ``ValueError``
    #: with a message for the model when they do not fit ``parameters``.
    _check: Callable[[dict[str, Any]], dict[str, Any]] = attrs.field(
        repr=False, alias="check", kw_only=True
    )

    @classmethod
    def from_schema(
        cls,
        name: str,
        description: str,
        parameters: Mapping[str, Any],
        function: Callable[..., Any],
        *,
        check: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        timeout: float | None = None,
        retries: int = _DEFAULT_RETRIES,
        takes_session: bool = False,
        needs_approval: bool | Callable[[dict[str, Any]], bool] = False,
        approval_timeout: float | None = None,
        guardrails: Sequence[Guardrail] = (),
        result_guardrails: Sequence[Guardrail] = (),
    ) -> Tool:
        """A tool whose schema comes from elsewhere (an MCP server, an API description).

        ``function`` is called with the arguments as keywords (after the Session if
        ``takes_session``). ``check`` validates them (raising ``ValueError`` with a message for
        the model); without it any JSON object is passed on, for the function to judge.
        """
        if not isinstance(parameters, Mapping):
            raise InvalidArgumentError(
                "parameters", f"must be a JSON schema (a mapping), not {type_name(parameters)}"
            )
        if not callable(function):
            raise InvalidArgumentError("function", f"must be callable, not {type_name(function)}")
        return cls(
            name=_check_name(name),
            description=check_str("description", description),
            parameters=dict(parameters),
            function=function,
            timeout=check_optional_seconds("timeout", timeout),
            retries=check_count("retries", retries),
            takes_session=takes_session,
            is_async=inspect.iscoroutinefunction(inspect.unwrap(function)),
            check=check if check is not None else dict,
            needs_approval=_check_approval(needs_approval),
            approval_timeout=check_optional_seconds("approval_timeout", approval_timeout),
            guardrails=check_guardrails("guardrails", guardrails),
            result_guardrails=check_guardrails("result_guardrails", result_guardrails),
        )

    def validate(self, arguments: str | Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments for the function, from the model's JSON (or a mapping).

        Raises :class:`ToolArgumentsError` with a message meant for the model.
        """
        if isinstance(arguments, str):
            text = arguments.strip() or "{}"
            try:
                decoded = json.loads(text)
            except ValueError as exc:
                raise ToolArgumentsError(self.name, f"not valid JSON ({exc})") from None
        else:
            decoded = arguments
        if not isinstance(decoded, Mapping):
            raise ToolArgumentsError(self.name, f"must be a JSON object, not {type_name(decoded)}")
        try:
            return self._check(dict(decoded))
        except ValueError as exc:
            raise ToolArgumentsError(self.name, str(exc)) from None

    def wants_approval(self, arguments: dict[str, Any]) -> bool:
        """Whether this call (with these validated arguments) must be approved first."""
        rule = self.needs_approval
        return bool(rule(arguments)) if callable(rule) else bool(rule)

    @property
    def spec(self) -> ToolSpec:
        """What the model is told about this tool (as backends receive it)."""
        return ToolSpec(self.name, self.description, self.parameters)

    def to_schema(self) -> dict[str, Any]:
        """The tool as OpenAI's ``tools`` entries describe a function."""
        return self.spec.to_dict()


@overload
def tool(
    function: Callable[..., Any],
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    retries: int = _DEFAULT_RETRIES,
    needs_approval: bool | Callable[[dict[str, Any]], bool] = False,
    approval_timeout: float | None = None,
    guardrails: Sequence[Guardrail] = (),
    result_guardrails: Sequence[Guardrail] = (),
) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    retries: int = _DEFAULT_RETRIES,
    needs_approval: bool | Callable[[dict[str, Any]], bool] = False,
    approval_timeout: float | None = None,
    guardrails: Sequence[Guardrail] = (),
    result_guardrails: Sequence[Guardrail] = (),
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    retries: int = _DEFAULT_RETRIES,
    needs_approval: bool | Callable[[dict[str, Any]], bool] = False,
    approval_timeout: float | None = None,
    guardrails: Sequence[Guardrail] = (),
    result_guardrails: Sequence[Guardrail] = (),
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a :class:`Tool` of a function: ``@tool`` or ``@tool(name=..., timeout=...)``.

    The name defaults to the function's, the description to its docstring's first paragraph;
    parameter descriptions come from an ``Args:`` section of the docstring.
    ``needs_approval`` (``True``, or a predicate on the validated arguments) makes each call
    wait for a person's decision first, at most ``approval_timeout`` seconds.
    ``guardrails`` check each call's arguments before it runs, ``result_guardrails`` what
    the model is told of its result.
    """
    seconds = check_optional_seconds("timeout", timeout)
    tries = check_count("retries", retries)
    rule = _check_approval(needs_approval)
    wait = check_optional_seconds("approval_timeout", approval_timeout)
    checks = check_guardrails("guardrails", guardrails)
    result_checks = check_guardrails("result_guardrails", result_guardrails)
    if name is not None:
        _check_name(name)
    if description is not None:
        check_str("description", description)

    def make(fn: Callable[..., Any]) -> Tool:
        derived = _derive(fn, name=name, description=description, timeout=seconds, retries=tries)
        return attrs.evolve(
            derived,
            needs_approval=rule,
            approval_timeout=wait,
            guardrails=checks,
            result_guardrails=result_checks,
        )

    return make if function is None else make(function)


def _check_approval(rule: object) -> bool | Callable[[dict[str, Any]], bool]:
    if isinstance(rule, bool) or callable(rule):
        return rule
    raise InvalidArgumentError(
        "needs_approval", f"must be True, False or a function of the arguments, not {rule!r}"
    )


def check_tools(tools: object) -> tuple[Tool, ...]:
    """A call's ``tools=`` argument: a sequence of distinct-named :class:`Tool` values."""
    return check_named("tools", tools, Tool, "Tool", "tool")


def _derive(
    fn: Callable[..., Any],
    *,
    name: str | None,
    description: str | None,
    timeout: float | None,
    retries: int,
) -> Tool:
    if isinstance(fn, Tool):
        raise InvalidArgumentError("function", f"{fn.name!r} is already a tool")
    if not callable(fn):
        raise InvalidArgumentError("function", f"must be a function, not {type_name(fn)}")
    label = getattr(fn, "__name__", None) or type_name(fn)
    tool_name = _check_name(name if name is not None else label)
    try:
        signature = inspect.signature(fn)
        hints = typing.get_type_hints(fn)
    except (TypeError, ValueError, NameError) as exc:
        raise InvalidArgumentError(label, f"cannot read its signature or hints: {exc}") from None
    doc = inspect.getdoc(fn) or ""
    summary, documented = _parse_doc(doc)
    parameters = list(signature.parameters.values())
    takes_session = bool(parameters) and _is_session(parameters[0], hints)
    if takes_session:
        parameters = parameters[1:]
    fields: dict[str, Any] = {}
    for parameter in parameters:
        where = f"{label}({parameter.name})"
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise InvalidArgumentError(where, "*args and **kwargs cannot be described to a model")
        if parameter.kind is parameter.POSITIONAL_ONLY:
            raise InvalidArgumentError(where, "positional-only parameters cannot be named")
        if parameter.name not in hints:
            raise InvalidArgumentError(
                where, "has no type hint: the model is told each parameter's type"
            )
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (
            hints[parameter.name],
            pydantic.Field(default, description=documented.get(parameter.name)),
        )
    try:
        model = pydantic.create_model(
            f"{tool_name}_arguments",
            __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=False),
            **fields,
        )
        schema = model.model_json_schema()
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError) as exc:
        raise InvalidArgumentError(label, f"a parameter type has no JSON schema: {exc}") from None
    schema.pop("title", None)
    text = description if description is not None else summary
    if not text:
        raise InvalidArgumentError(
            label, "has no docstring: the model needs a description (or pass description=...)"
        )
    return Tool(
        name=tool_name,
        description=text,
        parameters=schema,
        function=fn,
        timeout=timeout,
        retries=retries,
        takes_session=takes_session,
        is_async=inspect.iscoroutinefunction(inspect.unwrap(fn)),
        check=_pydantic_check(model),
    )


def _pydantic_check(model: type[pydantic.BaseModel]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Validate with the model derived from the function's signature."""

    def check(arguments: dict[str, Any]) -> dict[str, Any]:
        try:
            validated = model.model_validate(arguments)
        except pydantic.ValidationError as exc:
            raise ValueError(describe_errors(exc)) from None
        return {name: getattr(validated, name) for name in type(validated).model_fields}

    return check


def _check_name(name: object) -> str:
    text = check_str("name", name)
    if not _NAME.match(text):
        raise InvalidArgumentError(
            "name", f"{text!r}: a tool name is 1-64 letters, digits, '_' or '-'"
        )
    return text


def _is_session(parameter: inspect.Parameter, hints: Mapping[str, Any]) -> bool:
    """Whether a first parameter is annotated with agtl's Session (it is not in the schema)."""
    hint = hints.get(parameter.name)
    return isinstance(hint, type) and issubclass(hint, SessionType)


_SECTION: Final = ("args:", "arguments:", "parameters:")
_ENTRY: Final = re.compile(r"^(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def _parse_doc(doc: str) -> tuple[str, dict[str, str]]:
    """The docstring's first paragraph, and parameter descriptions from an ``Args:`` section.

    The section is Google style: ``name: text`` (or ``name (type): text``) one indent in,
    continuation lines deeper; it ends at the first line back at the section's own indent.
    """
    first = doc.split("\n\n", 1)[0]
    summary = "" if first.strip().lower() in _SECTION else " ".join(first.split())
    documented: dict[str, str] = {}
    lines = doc.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().lower() in _SECTION), None)
    if start is None:
        return summary, documented
    base = _indent(lines[start])
    entry_indent: int | None = None
    current: str | None = None
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        indent = _indent(line)
        if indent <= base:
            break  # the next section
        if entry_indent is None:
            entry_indent = indent
        match = _ENTRY.match(line.strip())
        if indent == entry_indent and match:
            current = match.group(1)
            documented[current] = match.group(2).strip()
        elif current is not None:
            documented[current] = f"{documented[current]} {line.strip()}".strip()
    return summary, documented


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def describe_errors(error: pydantic.ValidationError, *, whole: str = "arguments") -> str:
    """Validation errors in one line the model can act on: ``where: what`` each.

    ``whole`` names the value itself when an error has no location inside it.
    """
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item.get("loc", ())) or whole
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "; ".join(parts)
