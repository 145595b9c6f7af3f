"""The server's conversations: in memory, or one JSON file each in a directory.

A conversation takes one turn at a time: a second turn while one runs is refused, so two
replies never interleave in one history.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from agtl.conversation import Conversation

__all__ = ["ConversationStore", "valid_id"]

_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


def valid_id(text: str) -> bool:
    return _ID.fullmatch(text) is not None


class ConversationStore:
    def __init__(self, directory: Path | None, system: str | None) -> None:
        self.directory = directory
        self.system = system
        self._memory: dict[str, Conversation] = {}
        self._busy: set[str] = set()

    def _path(self, conversation_id: str) -> Path:
        assert self.directory is not None
        assert valid_id(conversation_id)
        return self.directory / f"{conversation_id}.json"

    def get(self, conversation_id: str) -> Conversation | None:
        """The saved conversation, or ``None`` if there is none yet."""
        if self.directory is None:
            return self._memory.get(conversation_id)
        path = self._path(conversation_id)
        return Conversation.load(path) if path.exists() else None

    def open_turn(self, conversation_id: str) -> Conversation | None:
        """The conversation to take a turn on (new if missing); ``None`` while one runs."""
        if conversation_id in self._busy:
            return None
        self._busy.add(conversation_id)
        return self.get(conversation_id) or Conversation(system=self.system)

    def close_turn(self, conversation_id: str, conversation: Conversation) -> None:
        """The turn ended (however it ended): keep what it added."""
        try:
            if self.directory is None:
                self._memory[conversation_id] = conversation
            else:
                conversation.save(self._path(conversation_id))
        finally:
            self._busy.discard(conversation_id)

    def release(self, conversation_id: str) -> None:
        """The turn never started."""
        self._busy.discard(conversation_id)
