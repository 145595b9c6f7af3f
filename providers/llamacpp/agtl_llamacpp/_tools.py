"""Tool calls on a local model: told in the prompt, forced by a grammar, parsed from the output.

A GGUF chat template knows nothing of tools (the bundled SmolLM2's is plain ChatML), so the
provider describes them itself: the system message lists each tool with its JSON schema and
says how to call one. A call is one JSON object, ``{"name": ..., "arguments": {...}}``.

With ``tool_choice`` "required" or a tool's name, a grammar built from the tools' schemas lets
the model produce nothing but a well-formed call, so even a 135M model calls correctly. With
"auto" the grammar allows either such a call or plain text that does not start with ``{``.
Earlier calls and their results go back to the model as text in the same format.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

from agtl import GenerationRequest, Message, Role, ToolCallRequest, ToolSpec

__all__ = ["ToolMode", "call_grammar", "parse_call", "render_messages"]

#: How a generation treats tools: None (no tools), "forced" (a call, nothing else) or "auto".
ToolMode = str | None


def mode_of(request: GenerationRequest) -> ToolMode:
    if not request.tools or request.tool_choice == "none":
        return None
    return "auto" if request.tool_choice in (None, "auto") else "forced"


def render_messages(request: GenerationRequest) -> list[dict[str, Any]]:
    """The chat as the template receives it: tools described, calls and results as text."""
    messages: list[dict[str, Any]] = []
    for message in request.messages:
        messages.append({"role": message.role.value, "content": _content(message)})
    if mode_of(request) is None:
        return messages
    guide = _tool_guide(request.tools, request.tool_choice)
    if messages and messages[0]["role"] == Role.SYSTEM.value:
        messages[0] = {"role": "system", "content": f"{messages[0]['content']}\n\n{guide}"}
    else:
        messages.insert(0, {"role": "system", "content": guide})
    return messages


def call_grammar(request: GenerationRequest) -> LlamaGrammar | None:
    """The grammar for this request's tool mode (None: no tools)."""
    mode = mode_of(request)
    if mode is None:
        return None
    tools = request.tools
    if mode == "forced" and request.tool_choice != "required":
        tools = tuple(t for t in tools if t.name == request.tool_choice)
    variants = [_call_schema(spec) for spec in tools]
    schema = variants[0] if len(variants) == 1 else {"anyOf": variants}
    rules = json_schema_to_gbnf(json.dumps(schema), prop_order=["name", "arguments"])
    if mode == "auto":
        # Either a call, or text whose first character is not "{".
        rules = rules.replace("root ::=", "call ::=", 1)
        rules += "\nroot ::= call | text\ntext ::= [^{] [^\\x00]*\n"
    return LlamaGrammar.from_string(rules, verbose=False)


def parse_call(text: str, tools: Sequence[ToolSpec], index: int) -> ToolCallRequest | None:
    """The tool call ``text`` holds, or None when it is not one (plain text)."""
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        data = json.loads(stripped)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    # A name that matches no tool is still a call: the tool loop tells the model so.
    arguments = data.get("arguments", {})
    return ToolCallRequest(
        id=f"call_{index}_0",
        name=data["name"],
        arguments=json.dumps(arguments, ensure_ascii=False),
    )


def _content(message: Message) -> str:
    if message.role is Role.ASSISTANT and message.tool_calls:
        calls = "\n".join(
            json.dumps({"name": c.name, "arguments": _loads(c.arguments)}, ensure_ascii=False)
            for c in message.tool_calls
        )
        return f"{message.content}\n{calls}" if message.content.strip() else calls
    if message.role is Role.TOOL:
        return f"Tool result: {message.content}"
    return message.content


def _loads(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def _call_schema(spec: ToolSpec) -> dict[str, Any]:
    parameters = dict(spec.parameters) or {"type": "object", "properties": {}}
    return {
        "type": "object",
        "properties": {"name": {"const": spec.name}, "arguments": parameters},
        "required": ["name", "arguments"],
    }


def _tool_guide(tools: Sequence[ToolSpec], choice: str | None) -> str:
    listing = "\n".join(
        json.dumps(
            {"name": t.name, "description": t.description, "parameters": t.parameters},
            ensure_ascii=False,
        )
        for t in tools
    )
    if choice in (None, "auto"):
        how = (
            "To call a tool, reply with only a JSON object: "
            '{"name": <tool name>, "arguments": {<arguments>}}. Otherwise answer in text.'
        )
    else:
        how = 'Call a tool now: reply with only {"name": <tool name>, "arguments": {...}}.'
    return f"You can use these tools:\n{listing}\n{how}"
