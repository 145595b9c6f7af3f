"""Agents: a model's role written down once (instructions, tools, output type, model, options,
step limit) and run by whatever execution needs it, with the session's provider.

``await agent.run(session, "...")`` runs the agent's tool loop inside the current execution;
its name is on every step and LLM-call record it makes. ``agent.workflow`` is a ready
workflow for ``simple_execution``, ``agtl run``, ``agtl serve`` and ``agtl.temporal``.
``agent.as_tool()`` lets another agent call it: each call runs it as a **child execution**
of the calling one, in the calling tool's scope, so a cancel of the parent from any source
reaches it, and its Result (usage, cost, calls) is listed in the parent's summary.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import attrs
import trio

from agtl._call_spec import DEFAULT_MAX_STEPS
from agtl._replies import Step, TextResult
from agtl._state import agent_path, current_agent
from agtl._tool_loop import TextPart, ToolLoopStream
from agtl._typed_output import OutputSchema
from agtl.conversation import Conversation
from agtl.errors import AgtlError, InvalidArgumentError
from agtl.guardrails import Guardrail, check_guardrails
from agtl.limits import UsageLimits
from agtl.messages import Message, Role, build_messages
from agtl.options import GenerationOptions
from agtl.provider import Provider
from agtl.session import Session
from agtl.tools import Tool, check_tools, part_hook
from agtl.validation import check_count, check_optional_seconds, check_str, type_name

__all__ = [
    "FINAL_ANSWER_PROMPT",
    "Agent",
    "AgentResult",
    "Handoff",
    "HandoffLoopError",
    "SubAgentError",
    "handoff",
]

#: After an agent with tools and an ``output_type`` answered, what asks for the typed answer.
FINAL_ANSWER_PROMPT: Final = "Give your final answer now, in the requested format."
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,47}")


class SubAgentError(AgtlError):
    """An agent called as a tool did not finish (it failed, or its own timeout or budget
    stopped it): the calling model is told, as for any tool that raised."""


class HandoffLoopError(AgtlError):
    """A run handed off more than its ``max_handoffs`` times (agents passing it around)."""

    def __init__(self, limit: int, path: tuple[str, ...]) -> None:
        self.limit = limit
        self.path = path
        super().__init__(
            f"more than max_handoffs={limit} handoffs: {' -> '.join(path)}; raise "
            "max_handoffs, or give the agents clearer instructions on when to hand off"
        )


@attrs.frozen
class AgentResult:
    """What one run of an agent gave: ``output`` (the text, or the typed object), the final
    ``text``, and every model call of its tool loop as ``steps`` (each names its agent).
    ``agent`` is the agent that answered: after handoffs, the last one (``handoffs`` lists the
    agents the run was handed to, in order)."""

    agent: str
    output: Any
    text: str
    steps: tuple[Step, ...]
    handoffs: tuple[str, ...] = ()


@attrs.frozen
class Handoff:
    """An agent a run may be handed to (see :func:`handoff`)."""

    target: Agent | Callable[[], Agent]
    keep: str = "all"

    def agent(self) -> Agent:
        """The agent (a function given for it is called now)."""
        found = self.target if isinstance(self.target, Agent) else self.target()
        if not isinstance(found, Agent):
            raise InvalidArgumentError(
                "handoff", f"must give an agtl.Agent, not {type_name(found)}"
            )
        return found


def handoff(target: Agent | Callable[[], Agent], *, keep: str = "all") -> Handoff:
    """A handoff to ``target``: the agent, or a function returning it (for agents that hand
    back to each other, which cannot all exist first). ``keep`` is what the target sees of
    the conversation so far: ``"all"`` of it, or the ``"last_user"`` message only."""
    if keep not in ("all", "last_user"):
        raise InvalidArgumentError("keep", f"must be 'all' or 'last_user', not {keep!r}")
    if not isinstance(target, Agent) and not callable(target):
        raise InvalidArgumentError("target", f"must be an agtl.Agent, not {type_name(target)}")
    return Handoff(target, keep)


def _handoffs(value: Sequence[Any]) -> tuple[Handoff, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidArgumentError("handoffs", f"must be a list of agents, not {type_name(value)}")
    return tuple(v if isinstance(v, Handoff) else handoff(v) for v in value)


def _check_name(value: object) -> str:
    name = check_str("name", value)
    if not _NAME.fullmatch(name):
        raise InvalidArgumentError(
            "name",
            f"must start with a letter and hold only letters, digits, '_' and '-' (at most 48), "
            f"not {name!r}: it names the agent's tool and its records",
        )
    return name


def _check_options(value: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidArgumentError("options", f"must be a mapping, not {type_name(value)}")
    GenerationOptions.from_kwargs(dict(value))  # an unknown or bad option fails here
    return dict(value)


def _check_instructions(value: object) -> str:
    return check_str("instructions", value)


def _input_guardrails(value: object) -> tuple[Guardrail, ...]:
    return check_guardrails("input_guardrails", value)


def _output_guardrails(value: object) -> tuple[Guardrail, ...]:
    return check_guardrails("output_guardrails", value)


@attrs.frozen
class Agent:
    """A reusable agent: who it is (``instructions``), what it may use (``tools``), what it
    answers with (``output_type``: text when ``None``), and how (``model``, ``options``,
    ``max_steps``, ``on_max_steps``, ``tool_choice``). It holds no provider: the session
    running it does."""

    name: str = attrs.field(converter=_check_name)
    instructions: str = attrs.field(converter=_check_instructions)
    tools: tuple[Tool, ...] = attrs.field(default=(), converter=check_tools)
    output_type: Any = None
    model: str | None = None
    options: Mapping[str, Any] = attrs.field(factory=dict, converter=_check_options)
    max_steps: int = DEFAULT_MAX_STEPS
    on_max_steps: str = "raise"
    #: The first model call's ``tool_choice`` ("each" suits small models; see generate_text).
    tool_choice: str | None = None
    #: Agents the run may be handed to: ``transfer_to_<name>`` tools the model may call.
    handoffs: tuple[Handoff, ...] = attrs.field(default=(), converter=_handoffs)
    #: How many handoffs one run may make (then HandoffLoopError).
    max_handoffs: int = 5
    #: Guardrails on the run's input (its first model call) and on every reply it makes.
    input_guardrails: tuple[Guardrail, ...] = attrs.field(default=(), converter=_input_guardrails)
    output_guardrails: tuple[Guardrail, ...] = attrs.field(default=(), converter=_output_guardrails)

    def __attrs_post_init__(self) -> None:
        if self.model is not None:
            check_str("model", self.model)
        check_count("max_steps", self.max_steps, minimum=1)
        check_count("max_handoffs", self.max_handoffs)
        if self.on_max_steps not in ("raise", "answer"):
            raise InvalidArgumentError(
                "on_max_steps", f"must be 'raise' or 'answer', not {self.on_max_steps!r}"
            )
        if self.output_type is not None:
            OutputSchema.of(self.output_type)  # a type that cannot be an answer fails here

    async def run(
        self,
        session: Session,
        input: str | Sequence[Message],
        *,
        conversation: Conversation | None = None,
    ) -> AgentResult:
        """Run the agent on ``input`` (a prompt, or messages after its instructions) inside
        the current execution; its calls and steps carry its name. With ``conversation``,
        the run continues it (its turns are added there; its own system message applies:
        start it as ``Conversation(agent.instructions)``), and ``input`` is the user's turn."""
        if not isinstance(session, Session):
            raise InvalidArgumentError(
                "session", f"must be an agtl Session, not {type_name(session)}"
            )
        if conversation is not None and not isinstance(conversation, Conversation):
            raise InvalidArgumentError(
                "conversation", f"must be an agtl.Conversation, not {type_name(conversation)}"
            )
        if self.handoffs or conversation is not None:
            return await self._run_with_handoffs(session, input, conversation)
        asked = _messages(self.instructions, input)
        naming = current_agent.set(self.name)
        pathing = agent_path.set((*agent_path.get(), self.name))
        guarded: dict[str, Any] = {
            "input_guardrails": self.input_guardrails,
            "output_guardrails": self.output_guardrails,
        }
        try:
            steps: tuple[Step, ...] = ()
            text = ""
            if self.tools or self.output_type is None:
                reply = await _generate(
                    session,
                    self.name,
                    messages=asked,
                    model=self.model,
                    tools=self.tools or None,
                    max_steps=self.max_steps if self.tools else None,
                    on_max_steps=self.on_max_steps if self.tools else "raise",
                    tool_choice=self.tool_choice if self.tools else None,
                    **guarded,
                    **self.options,
                )
                guarded["input_guardrails"] = ()  # checked by the first call
                steps, text = _steps(reply, self.name), reply.text
                if self.output_type is None:
                    return AgentResult(self.name, text, text, steps)
                asked = (
                    *asked,
                    Message(Role.ASSISTANT, text),
                    Message(Role.USER, FINAL_ANSWER_PROMPT),
                )
            typed = await session.generate_object(
                output_type=self.output_type,
                messages=asked,
                model=self.model,
                **guarded,
                **self.options,
            )
            return AgentResult(self.name, typed, text, steps)
        finally:
            agent_path.reset(pathing)
            current_agent.reset(naming)

    async def _run_with_handoffs(
        self,
        session: Session,
        input: str | Sequence[Message | Mapping[str, Any]],
        given: Conversation | None,
    ) -> AgentResult:
        """The run on a conversation (the one given, or its own), so that whom it is handed
        to sees it: each agent in turn, until one answers without handing off."""
        current: Agent = self
        if given is None:
            conversation = _conversation(current.instructions, input)
        else:
            if not isinstance(input, str):
                raise InvalidArgumentError(
                    "input", "with conversation=, give the user's turn as a prompt (a str)"
                )
            conversation = given
        prompt = input if isinstance(input, str) else None
        steps: list[Step] = []
        hops: list[str] = []
        checks_input = self.input_guardrails  # the run's input: its first call checks it
        while True:
            transfers = {f"transfer_to_{h.agent().name}": h for h in current.handoffs}
            naming = current_agent.set(current.name)
            pathing = agent_path.set((*agent_path.get(), current.name))
            try:
                tools = (*current.tools, *(_transfer(n, h) for n, h in transfers.items()))
                loop: dict[str, Any] = {}
                if tools:  # an agent with no tools and no handoffs makes one plain call
                    loop = {
                        "tools": tools,
                        "max_steps": current.max_steps,
                        "on_max_steps": current.on_max_steps,
                        "tool_choice": current.tool_choice,
                        "end_on": list(transfers),
                    }
                reply = await _generate(
                    session,
                    current.name,
                    conversation=conversation,
                    prompt=prompt,
                    model=current.model,
                    input_guardrails=checks_input,
                    output_guardrails=current.output_guardrails,
                    **loop,
                    **current.options,
                )
                checks_input = ()
                steps.extend(_steps(reply, current.name))
                last = reply.steps[-1].tool_calls if reply.steps else ()
                handed = [c.name for c in last if c.name in transfers]
                if not handed:
                    output: Any = reply.text
                    if current.output_type is not None:
                        output = await session.generate_object(
                            output_type=current.output_type,
                            conversation=conversation,
                            prompt=FINAL_ANSWER_PROMPT,
                            model=current.model,
                            output_guardrails=current.output_guardrails,
                            **current.options,
                        )
                    return AgentResult(current.name, output, reply.text, tuple(steps), tuple(hops))
            finally:
                agent_path.reset(pathing)
                current_agent.reset(naming)
            chosen = transfers[handed[0]]
            target = chosen.agent()
            hops.append(target.name)
            if len(hops) > self.max_handoffs:
                raise HandoffLoopError(self.max_handoffs, (self.name, *hops))
            conversation = _handed(conversation, target.instructions, chosen.keep)
            current, prompt = target, None

    @property
    def workflow(self) -> Callable[[Session, Any], Awaitable[Any]]:
        """A workflow ``(session, input) -> output`` running this agent: give it to
        ``simple_execution``, or name it in a module (``research = agent.workflow``) for
        ``agtl run``, ``agtl serve`` and ``agtl.temporal.submit``."""
        agent = self

        async def workflow(session: Session, input: Any) -> Any:
            return (await agent.run(session, _as_input(input))).output

        workflow.__name__ = workflow.__qualname__ = self.name
        workflow.__doc__ = f"The agent {self.name!r}: {self.instructions}"
        return workflow

    def as_tool(
        self,
        name: str | None = None,
        description: str | None = None,
        *,
        timeout: float | None = None,
        limits: UsageLimits | None = None,
    ) -> Tool:
        """This agent as a tool another agent calls with a ``task``. Each call runs it as a
        child execution of the calling one (its own Result, listed in the caller's
        ``summary.children``; ``timeout`` and ``limits`` bound it), cancelled with its
        parent from any source. Its failure, or its own timeout, is a tool error the
        calling model is told; its output is the tool's result."""
        seconds = check_optional_seconds("timeout", timeout)
        if limits is not None and not isinstance(limits, UsageLimits):
            raise InvalidArgumentError(
                "limits", f"must be agtl.UsageLimits, not {type_name(limits)}"
            )
        agent = self

        async def call(session: Session, task: str) -> Any:
            provider = session.provider
            if not isinstance(provider, Provider):  # always one: the session's own
                raise SubAgentError(f"the agent {agent.name} has no provider to run on")

            async def child(inner: Session) -> Any:
                return (await agent.run(inner, task)).output

            result = await provider.simple_execution(child, timeout=seconds, limits=limits)
            await trio.lowlevel.checkpoint_if_cancelled()  # the parent's cancel is ours too
            if result.succeeded:
                return result.value
            why = result.error if result.error is not None else result.cancel
            raise SubAgentError(f"the agent {agent.name} did not finish: {why}")

        return Tool.from_schema(
            name or self.name,
            description or f"Ask the agent {self.name}: {self.instructions}",
            {
                "type": "object",
                "properties": {"task": {"type": "string", "description": "The question, in full."}},
                "required": ["task"],
            },
            call,
            check=_task,
            takes_session=True,
        )


def _messages(instructions: str, input: object) -> tuple[Message, ...]:
    """The agent's instructions as the system message, then the input."""
    if isinstance(input, str):
        return build_messages(prompt=input, messages=None, system=instructions)
    return build_messages(prompt=None, messages=input, system=instructions)


def _as_input(value: Any) -> Any:
    """A workflow's input as an agent takes it: a prompt, {"prompt": ...}, or messages."""
    if isinstance(value, Mapping) and "prompt" in value:
        return value["prompt"]
    return value


def _steps(reply: TextResult, agent: str) -> tuple[Step, ...]:
    """A reply's steps: a tool loop's, or the one call of a plain reply."""
    if reply.steps:
        return reply.steps
    return (Step(reply.call_index, reply.text, (), reply.stop_reason, reply.usage, agent),)


async def _generate(session: Session, agent: str, **call: Any) -> TextResult:
    """The agent's tool loop: streamed, its parts sent on tagged with its name, when it runs
    as a tool of a loop whose parts someone reads; else run to its end."""
    forward = part_hook.get()
    if forward is None:
        return await session.generate_text(**call)
    async with session.stream_text(**call) as stream:
        if isinstance(stream, ToolLoopStream):
            async for part in stream.parts():
                forward(agent, part)
        else:
            async for delta in stream:
                forward(agent, TextPart(delta))
    result: TextResult = stream.result
    return result


def _conversation(instructions: str, input: object) -> Conversation:
    """A run's conversation: the instructions as its system message, then the input's
    messages (a prompt is the first call's ``prompt``)."""
    conversation = Conversation(instructions)
    if not isinstance(input, str):
        for message in _messages(instructions, input)[1:]:
            conversation.add(message.role, message.content, tool_calls=message.tool_calls)
    return conversation


def _handed(old: Conversation, instructions: str, keep: str) -> Conversation:
    """The conversation the agent handed to continues: its own instructions, then all of
    what was said, or the last user message only."""
    entries = [e for e in old.entries if e.role is not Role.SYSTEM]
    if keep == "last_user":
        entries = [e for e in entries if e.role is Role.USER][-1:]
    new = Conversation(instructions)
    for entry in entries:
        new.add(
            entry.role, entry.content, tool_calls=entry.tool_calls, tool_call_id=entry.tool_call_id
        )
    return new


def _transfer(name: str, target: Handoff) -> Tool:
    """The tool that hands the run to ``target``."""
    agent = target.agent()

    async def transfer() -> str:
        return f"Transferred to {agent.name}."

    return Tool.from_schema(
        name,
        f"Hand the conversation to the agent {agent.name}: {agent.instructions}",
        {"type": "object", "properties": {}},
        transfer,
    )


def _task(arguments: dict[str, Any]) -> dict[str, Any]:
    task = arguments.get("task")
    if not isinstance(task, str) or not task.strip():
        raise ValueError("task: give the agent a task (a non-empty string)")
    return {"task": task}
