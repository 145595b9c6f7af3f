"""Chat messages as providers receive them."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from agtl.errors import InvalidArgumentError
from agtl.validation import type_name

__all__ = ["Message", "Role", "ToolCallRequest"]


class Role(enum.StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


def _role(value: object) -> Role:
    if isinstance(value, Role):
        return value
    try:
        return Role(str(value)) if isinstance(value, str) else Role(value)  # type: ignore[arg-type]
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise InvalidArgumentError("role", f"must be one of {allowed}; got {value!r}") from None


def _content(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError("content", f"must be a str, not {type_name(value)}")
    return value


def _arguments(value: object) -> str:
    """A call's arguments as the JSON text a model sends; a mapping is written as that text."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        try:
            return json.dumps(dict(value), ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(
                "arguments", f"must be JSON text or a JSON-able dict: {exc}"
            ) from None
    raise InvalidArgumentError("arguments", f"must be JSON text or a dict, not {type_name(value)}")


def _id(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError("id", f"must be a str, not {type_name(value)}")
    return value


def _name(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError("name", f"must be a str, not {type_name(value)}")
    return value


@attrs.frozen
class ToolCallRequest:
    """A tool call an assistant message asks for (OpenAI's ``tool_calls`` entries).

    ``arguments`` is the JSON text the model sent; a dict is accepted and written as that text.
    """

    id: str = attrs.field(converter=_id)
    name: str = attrs.field(converter=_name)
    arguments: str = attrs.field(default="{}", converter=_arguments)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@attrs.frozen
class Message:
    role: Role = attrs.field(converter=_role)
    content: str = attrs.field(converter=_content)
    #: On assistant messages: the tool calls it requested.
    tool_calls: tuple[ToolCallRequest, ...] = ()
    #: On tool messages: which call this is the result of.
    tool_call_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"role": self.role.value, "content": self.content}
        if self.tool_calls:
            data["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        if self.tool_call_id is not None:
            data["tool_call_id"] = self.tool_call_id
        return data


def build_messages(*, prompt: object, messages: object, system: object) -> tuple[Message, ...]:
    """The message list of one call from the ``prompt``/``messages``/``system`` arguments."""
    if (prompt is None) == (messages is None):
        raise InvalidArgumentError(
            "prompt/messages", "pass exactly one of prompt=... (a str) or messages=[...]"
        )
    result: list[Message] = []
    if system is not None:
        if not isinstance(system, str):
            raise InvalidArgumentError("system", f"must be a str, not {type_name(system)}")
        result.append(Message(Role.SYSTEM, system))
    if prompt is not None:
        if not isinstance(prompt, str):
            raise InvalidArgumentError("prompt", f"must be a str, not {type_name(prompt)}")
        if not prompt.strip():
            raise InvalidArgumentError("prompt", "must not be empty")
        result.append(Message(Role.USER, prompt))
        return tuple(result)
    if isinstance(messages, str | bytes) or not isinstance(messages, Iterable):
        raise InvalidArgumentError(
            "messages",
            f"must be a list of Message or {{'role', 'content'}} dicts, not {type_name(messages)}",
        )
    for index, item in enumerate(messages):
        result.append(_message(item, index))
    if not any(m.role is not Role.SYSTEM for m in result):
        raise InvalidArgumentError("messages", "must hold at least one non-system message")
    return tuple(result)


def _message(item: object, index: int) -> Message:
    if isinstance(item, Message):
        return item
    if isinstance(item, Mapping) and set(item) >= {"role", "content"}:
        try:
            return Message(item["role"], item["content"])
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"messages[{index}].{exc.argument}", exc.problem) from None
    raise InvalidArgumentError(
        f"messages[{index}]",
        f"must be a Message or a dict with 'role' and 'content', not {item!r:.80}",
    )
