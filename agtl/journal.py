"""Durable LLM and tool calls: record each finished call, replay it instead of doing it again.

A :class:`CallJournal` sits between an execution and its backend
(``provider.with_journal(journal)``) and its tools. Each LLM call that finishes is recorded as
a :class:`JournalEntry` (a fingerprint of its request, its text, usage, stop reason and tool
calls), each tool call that finishes as a :class:`ToolEntry` (the tool's name, a fingerprint
of its validated arguments, its status, result or error, and what the model was told), in
order. Given the entries of an earlier attempt of the same execution, a new attempt replays
them in order: a call whose request has the same fingerprint as the next entry gets the
recorded reply without reaching the model (``details["replayed"]`` in its call summary), and
a tool call whose name and arguments match gets the recorded result without running
(``replayed`` on its record). The calls of one step may finish in any order, so a tool call is
matched among the step's entries. The first call that differs is made live, and the rest of
the old entries are dropped, so a workflow that is not deterministic simply pays again from
where it diverged. A tool call that was running when the attempt died has no entry: it runs
again, with the same idempotency key (``agtl.current_tool_call()``), so a tool can make its
side effect exactly once. A person's decisions (an approval, a denial, an answer to
``session.request_input``) are kept as :class:`Decision` values by request id, so a later
attempt does not ask again; a journal made with ``on_wait`` is told of each request that
waits, so a host (the Temporal activity) can end the attempt and wait for the decision
durably, outside any worker.

This is how :mod:`agtl.temporal` resumes an execution on another worker after a crash; it
works the same for a script that keeps its journal in a file.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from agtl._jsonable import jsonable
from agtl._vocabulary import StopReason
from agtl.backend import CallReport, GenerationRequest, GenerationStream, StartGeneration
from agtl.errors import InvalidArgumentError
from agtl.messages import ToolCallRequest
from agtl.usage import Usage

__all__ = [
    "CallJournal",
    "Decision",
    "Entry",
    "JournalEntry",
    "ToolEntry",
    "arguments_fingerprint",
    "entry_from_dict",
    "fingerprint",
]

#: The key a replayed call's summary carries in ``details``.
REPLAYED = "replayed"


def fingerprint(request: GenerationRequest) -> str:
    """A digest of what decides a call's reply: model, messages, options, tools, tool choice.

    The execution id and call index are left out, so the same request in a new attempt (a new
    execution id) has the same fingerprint.
    """
    content = {
        "model": request.model,
        "messages": [message.to_dict() for message in request.messages],
        "options": jsonable(request.options.to_dict()),
        "tools": [tool.to_dict() for tool in request.tools],
        "tool_choice": request.tool_choice,
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def arguments_fingerprint(name: str, arguments: Any) -> str:
    """A digest of a tool call: the tool's name and its validated arguments (JSON form)."""
    text = json.dumps(
        {"tool": name, "arguments": jsonable(arguments)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(text.encode()).hexdigest()


@attrs.frozen
class ToolEntry:
    """One finished tool call as the journal keeps it: enough to give the model the same
    answer and the summary the same record without running the tool again."""

    name: str
    fingerprint: str
    status: str  # a ToolCallStatus value
    result: Any = None  # the result's JSON form
    error: str | None = None
    message: str = ""  # what the model was told
    approval: Mapping[str, Any] | None = None  # the decision it waited for, if any

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "tool", **attrs.asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolEntry:
        fields = {a.name for a in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


def entry_from_dict(data: Mapping[str, Any]) -> JournalEntry | ToolEntry:
    """An entry of either kind from its :meth:`to_dict` form."""
    if data.get("kind") == "tool":
        return ToolEntry.from_dict(data)
    return JournalEntry.from_dict(data)


@attrs.frozen
class JournalEntry:
    """One finished LLM call as the journal keeps it."""

    fingerprint: str
    text: str
    usage: Usage
    stop_reason: StopReason
    model: str | None = None
    tool_calls: tuple[ToolCallRequest, ...] = ()
    details: Mapping[str, Any] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe form (what a heartbeat or a file carries)."""
        return {
            "kind": "llm",
            "fingerprint": self.fingerprint,
            "text": self.text,
            "usage": self.usage.to_dict(),
            "stop_reason": self.stop_reason.value,
            "model": self.model,
            "tool_calls": [
                {"id": c.id, "name": c.name, "arguments": c.arguments} for c in self.tool_calls
            ],
            "details": jsonable(dict(self.details)),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JournalEntry:
        """The inverse of :meth:`to_dict`."""
        return cls(
            fingerprint=data["fingerprint"],
            text=data["text"],
            usage=Usage.from_dict(data["usage"]),
            stop_reason=StopReason(data["stop_reason"]),
            model=data.get("model"),
            tool_calls=tuple(ToolCallRequest(**c) for c in data.get("tool_calls") or ()),
            details=dict(data.get("details") or {}),
        )


Entry = JournalEntry | ToolEntry


@attrs.frozen
class Decision:
    """A person's decision on a request of the execution, kept so no attempt asks again.

    ``kind`` is ``"approval"`` (``approved``, ``reason``, ``by``) or ``"input"`` (``value``,
    the answer as given, validated where it is used); ``timed_out`` that nobody decided in
    time; ``waited`` the seconds the request was open.
    """

    request_id: str
    kind: str
    approved: bool = False
    value: Any = None
    reason: str | None = None
    by: str | None = None
    waited: float = 0.0
    timed_out: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "value": jsonable(self.value)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        fields = {a.name for a in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


class CallJournal:
    """The finished calls of one execution, and the earlier attempt's calls still to replay.

    ``entries`` is what a later attempt needs: the calls replayed so far plus those made live
    since. ``on_record`` is called (from the execution's task) with each entry as it is added,
    live or replayed, and with each decision, so the journal can be saved at once.
    ``decisions`` are the earlier attempts' decisions; ``on_wait``, if given, is called with
    the data of each request that starts waiting for a person (see :meth:`waiting`). ``key``
    names the execution across its attempts (a Temporal workflow id, a job id): tool calls'
    idempotency keys are made from it, so they are the same in every attempt (default: each
    attempt's execution id). Use one journal per execution attempt.
    """

    def __init__(
        self,
        entries: Iterable[Entry] = (),
        *,
        on_record: Callable[[Entry | Decision], None] | None = None,
        key: str | None = None,
        decisions: Iterable[Decision] = (),
        on_wait: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> None:
        if key is not None and (not isinstance(key, str) or not key):
            raise InvalidArgumentError("key", f"must be a non-empty str, not {key!r}")
        self.key = key
        self._pending: list[Entry] = list(entries)
        self._entries: list[Entry] = []
        self._diverged = False
        self._replayed = 0
        self._streamed = 0
        self._on_record = on_record
        self._on_wait = on_wait
        self._decisions = {d.request_id: d for d in decisions}
        self._lock = threading.Lock()

    @property
    def entries(self) -> tuple[Entry, ...]:
        """Every call this attempt replayed or made, in the order they finished."""
        with self._lock:
            return tuple(self._entries)

    @property
    def replayed(self) -> int:
        """How many calls were answered from the earlier attempt's entries."""
        return self._replayed

    @property
    def streamed_chars(self) -> int:
        """Characters of output the live calls of this attempt produced so far (progress)."""
        return self._streamed

    @property
    def decisions(self) -> tuple[Decision, ...]:
        """The decisions known to this attempt: the earlier ones and those made since."""
        with self._lock:
            return tuple(self._decisions.values())

    def decision(self, request_id: str) -> Decision | None:
        """The decision an earlier attempt (or this one) got for ``request_id``."""
        with self._lock:
            return self._decisions.get(request_id)

    def record_decision(self, decision: Decision) -> None:
        """A person decided (or nobody did in time): keep it for later attempts."""
        with self._lock:
            self._decisions[decision.request_id] = decision
        if self._on_record is not None:
            self._on_record(decision)

    @property
    def waits_elsewhere(self) -> bool:
        """Whether a host waits for decisions outside this attempt (``on_wait`` given)."""
        return self._on_wait is not None

    def waiting(self, request: Mapping[str, Any]) -> None:
        """A request (its data: ``kind``, ``id``, ...) waits for a person: tell the host."""
        if self._on_wait is not None:
            self._on_wait(request)

    def wrap(self, start: StartGeneration) -> StartGeneration:
        """``start_generation`` with replay in front and recording behind."""

        async def start_generation(request: GenerationRequest) -> GenerationStream:
            digest = fingerprint(request)
            entry = self._take(digest)
            if entry is not None:
                self._add(entry, live=False)
                return _Replay(entry)
            return _Recording(await start(request), digest, self)

        return start_generation

    def _take(self, digest: str) -> JournalEntry | None:
        """The next old entry if it is this LLM call; on the first mismatch, stop replaying
        for good."""
        with self._lock:
            if self._diverged or not self._pending:
                return None
            head = self._pending[0]
            if not isinstance(head, JournalEntry) or head.fingerprint != digest:
                self._diverge()
                return None
            self._replayed += 1
            self._pending.pop(0)
            return head

    def take_tool(self, name: str, digest: str) -> ToolEntry | None:
        """The old entry of this tool call, if the next old entries are tool calls (one
        step's, finished in any order) and one of them is it; else stop replaying for good.
        A replayed entry is recorded in this attempt's entries too."""
        with self._lock:
            found = None
            if not self._diverged:
                for index, entry in enumerate(self._pending):
                    if not isinstance(entry, ToolEntry):
                        break
                    if entry.name == name and entry.fingerprint == digest:
                        found = self._pending.pop(index)
                        self._replayed += 1
                        break
            if not isinstance(found, ToolEntry):
                self._diverge()
                return None
        self._add(found, live=False)
        return found

    def record_tool(self, entry: ToolEntry) -> None:
        """A tool call finished live: record it (nothing old past it is replayed)."""
        self._add(entry, live=True)

    def _diverge(self) -> None:
        self._diverged = True
        self._pending.clear()

    def _add(self, entry: Entry, *, live: bool) -> None:
        with self._lock:
            self._entries.append(entry)
            # A call made live means the old entries past it can no longer be trusted.
            if live:
                self._diverge()
        if self._on_record is not None:
            self._on_record(entry)

    def __repr__(self) -> str:
        return (
            f"CallJournal(entries={len(self._entries)}, replayed={self._replayed}, "
            f"to_replay={len(self._pending)})"
        )


class _Replay(GenerationStream):
    """A recorded reply, given back without calling the model."""

    def __init__(self, entry: JournalEntry) -> None:
        self._entry = entry
        self._sent = False

    async def next_delta(self) -> str | None:
        if self._sent or not self._entry.text:
            self._sent = True
            return None
        self._sent = True
        return self._entry.text

    def report(self) -> CallReport:
        entry = self._entry
        return CallReport(
            usage=entry.usage,
            stop_reason=entry.stop_reason if self._sent else None,
            model=entry.model,
            details={**entry.details, REPLAYED: True},
            tool_calls=entry.tool_calls,
        )

    async def aclose(self) -> None:
        pass


class _Recording(GenerationStream):
    """A live call: passes everything through and records the call once it finished."""

    def __init__(self, inner: GenerationStream, digest: str, journal: CallJournal) -> None:
        self._inner = inner
        self._digest = digest
        self._journal = journal
        self._text: list[str] = []

    async def next_delta(self) -> str | None:
        delta = await self._inner.next_delta()
        if delta is None:
            report = self._inner.report()
            self._journal._add(
                JournalEntry(
                    fingerprint=self._digest,
                    text="".join(self._text),
                    usage=report.usage,
                    stop_reason=report.stop_reason or StopReason.EOS,
                    model=report.model,
                    tool_calls=report.tool_calls,
                    details=dict(report.details),
                ),
                live=True,
            )
        else:
            self._text.append(delta)
            self._journal._streamed += len(delta)
        return delta

    def report(self) -> CallReport:
        return self._inner.report()

    async def aclose(self) -> None:
        await self._inner.aclose()
