"""Separating a reasoning block from a reply's content while it streams.

Only a block that *opens the reply* (after optional whitespace) counts: ``<think>...</think>``
or ``<thinking>...</thinking>``. Text is held back only while it could still be the start of
such a tag. A tag that appears later, inside ordinary prose, is left alone and never cuts the
text. A block still open when the reply stops (a cancel mid-thought) is reasoning too.
"""

from __future__ import annotations

from typing import Final

_TAGS: Final = {"<think>": "</think>", "<thinking>": "</thinking>"}


class ReasoningSplitter:
    def __init__(self) -> None:
        self._mode = "start"  # start -> reasoning -> content, or start -> content
        self._pending = ""
        self._close = ""
        self.reasoning = ""
        self.content = ""

    def feed(self, text: str) -> str:
        """Consume a delta; return the part that became visible content now."""
        if self._mode == "content":
            self.content += text
            return text
        self._pending += text
        if self._mode == "start":
            stripped = self._pending.lstrip()
            for opening, closing in _TAGS.items():
                if stripped.startswith(opening):
                    self._mode, self._close = "reasoning", closing
                    self._pending = stripped[len(opening) :]
                    break
            else:
                if stripped and any(tag.startswith(stripped) for tag in _TAGS):
                    return ""  # could still become an opening tag: wait for more
                if not stripped:
                    return ""  # only whitespace so far
                return self._become_content(self._pending)
        # reasoning mode: look for the closing tag, holding back a possible partial one
        index = self._pending.find(self._close)
        if index >= 0:
            self.reasoning += self._pending[:index]
            rest = self._pending[index + len(self._close) :].lstrip()
            self._pending = ""
            return self._become_content(rest) if rest else self._switch_to_content()
        keep = _partial_suffix(self._pending, self._close)
        self.reasoning += self._pending[: len(self._pending) - keep]
        self._pending = self._pending[len(self._pending) - keep :]
        return ""

    def finish(self) -> str:
        """The reply ended (or stopped): settle whatever was held back."""
        pending, self._pending = self._pending, ""
        if self._mode == "reasoning":
            self.reasoning += pending  # an unclosed block is reasoning, not content
            return ""
        if self._mode == "start" and pending.strip():
            return self._become_content(pending)
        return ""

    def _become_content(self, text: str) -> str:
        self._mode = "content"
        self._pending = ""
        self.content += text
        return text

    def _switch_to_content(self) -> str:
        self._mode = "content"
        return ""


def _partial_suffix(text: str, tag: str) -> int:
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


def split_reasoning(text: str) -> tuple[str, str]:
    """(reasoning, content) of a whole reply."""
    splitter = ReasoningSplitter()
    splitter.feed(text)
    splitter.finish()
    return splitter.reasoning, splitter.content
