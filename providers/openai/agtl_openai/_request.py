"""Building a chat-completions request: a pure function of the call and what the server is like.

The server's quirks are facts learned from its replies (a refused option, a dialect). They
live in one :class:`ServerQuirks` per provider, shared by its ``with_*`` copies and handed
explicitly to each stream, which records what it learns through the quirks' own methods.
"""

from __future__ import annotations

from typing import Any

import attrs

from agtl import GenerationRequest

__all__ = ["ServerQuirks", "request_arguments"]

_PASSED_THROUGH = (
    "max_tokens",
    "temperature",
    "top_p",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
)


@attrs.define
class ServerQuirks:
    """Facts learned from the server's replies, kept for the provider's later calls."""

    #: Ask for usage in streams; cleared when a server refuses ``stream_options``.
    stream_usage: bool = True
    #: Set once a server refused OpenAI's json_schema format (llama.cpp's server does): the
    #: schema is then sent as ``{"type": "json_object", "schema": ...}``.
    json_schema_as_json_object: bool = False

    def refuse_stream_usage(self) -> None:
        """The server refused ``stream_options``: stop asking for usage (it is estimated)."""
        self.stream_usage = False

    def refuse_json_schema(self) -> None:
        """The server refused the json_schema format: send llama.cpp's dialect from now on."""
        self.json_schema_as_json_object = True


def request_arguments(request: GenerationRequest, quirks: ServerQuirks) -> dict[str, Any]:
    """The keyword arguments of ``chat.completions.create`` for ``request`` on this server."""
    options = request.options
    arguments: dict[str, Any] = {
        "model": request.model,
        "messages": [m.to_dict() for m in request.messages],
        "stream": True,
    }
    if quirks.stream_usage:
        arguments["stream_options"] = {"include_usage": True}
    for name in _PASSED_THROUGH:
        value = getattr(options, name)
        if value is not None:
            arguments[name] = value
    fmt = options.response_format
    if quirks.json_schema_as_json_object and fmt is not None and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        arguments["response_format"] = {"type": "json_object", "schema": schema}
    if options.stop:
        arguments["stop"] = list(options.stop)
    if options.top_k is not None:
        arguments["extra_body"] = {"top_k": options.top_k}  # vLLM, llama.cpp server
    if request.tools:
        arguments["tools"] = [spec.to_dict() for spec in request.tools]
        choice = request.tool_choice or "auto"
        if choice in ("auto", "required", "none"):
            arguments["tool_choice"] = choice
        else:
            arguments["tool_choice"] = {"type": "function", "function": {"name": choice}}
    return arguments
