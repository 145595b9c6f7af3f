"""Conversations that survive Stop: partial replies kept, stops recorded, reasoning separated.

A :class:`Conversation` is an ordered list of :class:`Entry` (system, user, assistant, tool
messages) and :class:`CancelMarker` records. When a turn is stopped or fails, what the model
already said is kept as a ``partial`` assistant entry, followed by a marker. The marker is for
people: :meth:`Conversation.to_model_messages` leaves it out, and it is a typed record, never
recognised by matching text.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import attrs

from agtl._reasoning import ReasoningSplitter
from agtl.errors import AgtlError, InvalidArgumentError
from agtl.messages import Message, Role, ToolCallRequest
from agtl.summary import ErrorInfo
from agtl.validation import check_count, check_str

__all__ = ["CancelMarker", "Conversation", "ConversationFileError", "Entry"]

_FORMAT: Final = "agtl.conversation/1"


class ConversationFileError(AgtlError):
    """A saved conversation could not be read: missing, not JSON, or not a conversation."""


@attrs.frozen
class Entry:
    """One message of a conversation, with what agtl knows about it."""

    role: Role = attrs.field(converter=Role)
    content: str
    #: An assistant reply that was interrupted (stopped or failed) before it ended.
    partial: bool = False
    #: The reply was longer than the conversation keeps; ``content`` holds its start.
    truncated: bool = False
    #: A reasoning block the reply opened with; shown to people, not sent back by default.
    reasoning: str = ""
    #: Why the reply ended early, when it failed.
    error: ErrorInfo | None = None
    tool_calls: tuple[ToolCallRequest, ...] = ()
    tool_call_id: str | None = None
    #: Private fields of the application; never sent to a model.
    metadata: dict[str, Any] = attrs.field(factory=dict)
    created_at: float = attrs.field(factory=time.time)


@attrs.frozen
class CancelMarker:
    """A record that a turn was stopped (``reason``) or failed (``error``), and when.

    ``created_at`` is a Unix time, as on :class:`Entry` (a Result's ``cancel.at`` is seconds
    since the execution started: a different clock, hence a different name).
    """

    reason: str | None
    created_at: float = attrs.field(factory=time.time)
    error: ErrorInfo | None = None


Item = Entry | CancelMarker


class Conversation:
    """An ordered, persistent chat history that keeps interrupted replies.

    ``max_reply_chars`` bounds how much of one reply is kept; a longer one is cut and flagged
    ``truncated``.
    """

    def __init__(self, system: str | None = None, *, max_reply_chars: int = 200_000) -> None:
        self.max_reply_chars = check_count("max_reply_chars", max_reply_chars, minimum=1)
        self._items: list[Item] = []
        if system is not None:
            self.add(Role.SYSTEM, check_str("system", system))

    # -- reading ------------------------------------------------------------------------------
    @property
    def items(self) -> tuple[Item, ...]:
        return tuple(self._items)

    @property
    def entries(self) -> tuple[Entry, ...]:
        return tuple(item for item in self._items if isinstance(item, Entry))

    @property
    def markers(self) -> tuple[CancelMarker, ...]:
        return tuple(item for item in self._items if isinstance(item, CancelMarker))

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Item]:
        return iter(tuple(self._items))

    def to_model_messages(self, *, include_reasoning: bool = False) -> tuple[Message, ...]:
        """What a provider is sent: every message, partial replies included.

        Markers, private fields and (unless asked) reasoning are left out. Tool calls without
        a result, and tool results without their call, are dropped: providers refuse them.
        """
        entries = self.entries
        answered = {e.tool_call_id for e in entries if e.role is Role.TOOL and e.tool_call_id}
        requested = {c.id for e in entries for c in e.tool_calls}
        messages: list[Message] = []
        for entry in entries:
            if entry.role is Role.TOOL:
                if entry.tool_call_id in requested:
                    messages.append(
                        Message(Role.TOOL, entry.content, tool_call_id=entry.tool_call_id)
                    )
                continue
            content = entry.content
            if include_reasoning and entry.reasoning:
                content = f"<think>{entry.reasoning}</think>\n{content}"
            calls = tuple(c for c in entry.tool_calls if c.id in answered)
            if not content.strip() and not calls:
                continue
            messages.append(Message(entry.role, content, tool_calls=calls))
        return tuple(messages)

    # -- writing ------------------------------------------------------------------------------
    def add(self, role: Role | str, content: str, **fields: Any) -> Entry:
        """Append a message (``fields`` as on :class:`Entry`)."""
        try:
            entry = Entry(role, check_str("content", content, allow_empty=True), **fields)
        except ValueError as exc:
            raise InvalidArgumentError("role", str(exc)) from None
        self._items.append(entry)
        return entry

    def add_user(self, content: str) -> Entry:
        return self.add(Role.USER, check_str("content", content))

    def add_assistant(self, content: str, **fields: Any) -> Entry:
        return self.add(Role.ASSISTANT, content, **fields)

    def add_tool_result(self, tool_call_id: str, content: str) -> Entry:
        return self.add(Role.TOOL, content, tool_call_id=check_str("tool_call_id", tool_call_id))

    def begin_turn(self, user: str | None) -> Turn:
        """Start an assistant turn (after appending ``user``, if given); see :class:`Turn`."""
        if user is not None:
            self.add_user(user)
        return Turn(self)

    # -- persistence --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "max_reply_chars": self.max_reply_chars,
            "items": [_item_to_dict(item) for item in self._items],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Conversation:
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ConversationFileError(f"not an agtl conversation (expected format {_FORMAT!r})")
        conversation = cls(max_reply_chars=int(data.get("max_reply_chars", 200_000)))
        try:
            conversation._items = [_item_from_dict(item) for item in data["items"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ConversationFileError(f"malformed conversation item: {exc}") from None
        return conversation

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the conversation as JSON, atomically: a crash leaves the old file or the new.

        The temporary file is named after the writing process; one left behind by a process
        that died mid-save (a SIGKILL) is removed by the next save.
        """
        target = Path(path)
        _sweep_orphaned_temps(target)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex}")
        try:
            with tmp.open("w", encoding="utf-8") as handle:
                json.dump(self.to_dict(), handle, ensure_ascii=False)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Conversation:
        """Read a saved conversation; a missing or corrupt file raises ConversationFileError."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConversationFileError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConversationFileError(f"{path} is not valid JSON ({exc})") from None
        return cls.from_dict(data)


def _sweep_orphaned_temps(target: Path) -> None:
    """Remove temporary files of ``target`` whose writing process no longer exists."""
    try:
        candidates = list(target.parent.glob(f".{target.name}.tmp-*"))
    except OSError:
        return
    for tmp in candidates:
        pid_text = tmp.name.rsplit(".tmp-", 1)[1].split("-", 1)[0]
        if not pid_text.isdigit() or _process_alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            tmp.unlink()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, owned by someone else
    return True


class Turn:
    """One assistant reply in progress: it ends exactly once, in one of three ways.

    :meth:`finish` appends the reply; :meth:`stop` and :meth:`fail` append what was said so far
    as a ``partial`` entry (dropped if it is empty or only whitespace) followed by a
    :class:`CancelMarker`. Whatever is called first wins; later calls do nothing, so stopping
    twice in one turn keeps one partial, not two.
    """

    def __init__(self, conversation: Conversation) -> None:
        self._conversation = conversation
        self._splitter = ReasoningSplitter()
        self._chars = 0
        self._truncated = False
        self.ended = False

    def feed(self, delta: str) -> None:
        """Record a streamed delta (bounded by the conversation's ``max_reply_chars``)."""
        room = self._conversation.max_reply_chars - self._chars
        if room <= 0:
            self._truncated = True
            return
        if len(delta) > room:
            delta, self._truncated = delta[:room], True
        self._chars += len(delta)
        self._splitter.feed(delta)

    def replace(self, text: str) -> None:
        """The reply is ``text`` instead of what streamed (an output guardrail rewrote it)."""
        self._splitter = ReasoningSplitter()
        self._chars = 0
        self._truncated = False
        self.feed(text)

    @property
    def reasoning(self) -> str:
        return self._splitter.reasoning

    @property
    def content(self) -> str:
        return self._splitter.content

    def finish(self, tool_calls: tuple[ToolCallRequest, ...] = ()) -> Entry | None:
        """The reply ended: append it, with the tool calls it asked for (if any)."""
        if self.ended:
            return None
        self.ended = True
        self._splitter.finish()
        return self._conversation.add(
            Role.ASSISTANT,
            self._splitter.content,
            reasoning=self._splitter.reasoning,
            truncated=self._truncated,
            tool_calls=tool_calls,
        )

    def stop(self, reason: str | None) -> CancelMarker | None:
        return self._interrupt(CancelMarker(reason))

    def fail(self, error: BaseException) -> CancelMarker | None:
        info = ErrorInfo.of(error)
        return self._interrupt(CancelMarker(None, error=info), error=info)

    def _interrupt(
        self, marker: CancelMarker, error: ErrorInfo | None = None
    ) -> CancelMarker | None:
        if self.ended:
            return None
        self.ended = True
        self._splitter.finish()
        if self._splitter.content.strip():
            self._conversation.add(
                Role.ASSISTANT,
                self._splitter.content,
                partial=True,
                reasoning=self._splitter.reasoning,
                truncated=self._truncated,
                error=error,
            )
        self._conversation._items.append(marker)
        return marker


def _item_to_dict(item: Item) -> dict[str, Any]:
    kind = "marker" if isinstance(item, CancelMarker) else "entry"
    data = attrs.asdict(
        item, value_serializer=lambda _i, _f, v: v.value if isinstance(v, Role) else v
    )
    return {"kind": kind, **data}


def _item_from_dict(data: dict[str, Any]) -> Item:
    fields = dict(data)
    kind = fields.pop("kind")
    error = fields.pop("error", None)
    error_info = None if error is None else ErrorInfo(**error)
    if kind == "marker":
        if "at" in fields:  # files saved before the field was named created_at
            fields["created_at"] = fields.pop("at")
        return CancelMarker(error=error_info, **fields)
    if kind == "entry":
        calls = tuple(ToolCallRequest(**c) for c in fields.pop("tool_calls", ()))
        return Entry(error=error_info, tool_calls=calls, **fields)
    raise ValueError(f"unknown item kind {kind!r}")
