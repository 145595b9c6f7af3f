"""JSON parsed as it arrives: the value so far after each piece, in time linear in the text.

:class:`PartialJSON` reads each character once. Values that are complete never change again,
so a snapshot shares them and copies only the containers still open (the path from the root
to where the text stops). A snapshot holds every complete member, and the string being
written cut where the text stops; a number, ``true``/``false``/``null`` or a key still being
written is left out until it ends. It is lenient about what it cannot use yet, and strict at
the end: :meth:`PartialJSON.feed` raises ``ValueError`` on text that can never be JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

__all__ = ["PartialJSON"]

_STRING_STOP: Final = re.compile(r'["\\]')
_ATOM: Final = re.compile(r"[-+0-9.eEa-z]+")
_SPACE: Final = frozenset(" \t\r\n")
_ESCAPES: Final = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}
_MISSING: Final = object()


class _Frame:
    """An open object or array: what it holds so far, and what may come next."""

    __slots__ = ("container", "expect", "key")

    def __init__(self, container: dict[str, Any] | list[Any]) -> None:
        self.container = container
        self.key: str | None = None
        # "value" (a member's value, or an array item), "key", "colon", "next" (a comma
        # or the close), "first" (a key/item or the close, right after the opening).
        self.expect = "first"


class PartialJSON:
    """One JSON text, fed in pieces (see the module's description)."""

    __slots__ = ("_atom", "_escape", "_frames", "_high", "_root", "_string", "_string_is_key")

    def __init__(self) -> None:
        self._frames: list[_Frame] = []
        self._root: Any = _MISSING
        self._string: str | None = None  # the string being read (decoded so far)
        self._string_is_key = False
        self._escape = ""  # an escape sequence not complete yet ("\\", "\\u00")
        self._high = ""  # a high surrogate waiting for its low half
        self._atom = ""  # a number or literal being read

    @property
    def complete(self) -> bool:
        """Whether a whole JSON value was read."""
        return self._root is not _MISSING and not self._frames and not self._atom

    def feed(self, text: str) -> bool:
        """Read ``text``; whether the value so far changed (a snapshot would differ)."""
        changed = False
        i, n = 0, len(text)
        while i < n:
            if self._string is not None:
                i, grew = self._read_string(text, i)
                changed = changed or (grew and not self._string_is_key)
                continue
            if self._atom:
                match = _ATOM.match(text, i)
                if match is not None:
                    self._atom += match.group()
                    i = match.end()
                    if i == n:
                        break  # it may go on in the next piece
                self._end_atom()
                changed = True
                continue
            char = text[i]
            i += 1
            if char in _SPACE:
                continue
            changed = self._structural(char, text, i - 1) or changed
        return changed

    def finish(self) -> None:
        """The text ended: a number at the very end is complete."""
        if self._atom and self._string is None:
            self._end_atom()

    def _structural(self, char: str, text: str, at: int) -> bool:
        frame = self._frames[-1] if self._frames else None
        expect = "value" if frame is None else frame.expect
        if frame is None and self._root is not _MISSING:
            raise ValueError(f"text after the JSON value at {text[at : at + 20]!r}")
        # A value may start here: where one is expected, or first in an array.
        starts = expect == "value" or (
            expect == "first" and frame is not None and isinstance(frame.container, list)
        )
        if char == '"':
            if starts:
                self._string, self._string_is_key = "", False
                self._place("")  # an empty string is already a value to show
                return True
            if expect in ("key", "first"):
                self._string, self._string_is_key = "", True
                return False
            raise ValueError(f"a string where {_wanted(expect)} was expected")
        if char in "{[":
            if starts:
                container: dict[str, Any] | list[Any] = {} if char == "{" else []
                self._place(container)
                self._frames.append(_Frame(container))
                return True
            raise ValueError(f"{char!r} where {_wanted(expect)} was expected")
        if char in "}]":
            closing_dict = char == "}"
            if (
                frame is None
                or isinstance(frame.container, dict) != closing_dict
                or expect not in ("next", "first")
            ):
                raise ValueError(f"an unexpected {char!r}")
            self._frames.pop()
            self._after_value()
            return False
        if char == ":":
            if expect != "colon":
                raise ValueError(f"an unexpected ':' where {_wanted(expect)} was expected")
            assert frame is not None
            frame.expect = "value"
            return False
        if char == ",":
            if expect != "next":
                raise ValueError(f"an unexpected ',' where {_wanted(expect)} was expected")
            assert frame is not None
            frame.expect = "key" if isinstance(frame.container, dict) else "value"
            return False
        if starts:
            self._atom = char
            return False
        raise ValueError(f"{char!r} where {_wanted(expect)} was expected")

    def _read_string(self, text: str, i: int) -> tuple[int, bool]:
        """Read on in the current string; the new position, and whether it grew."""
        assert self._string is not None
        if self._escape:
            return self._read_escape(text, i)
        match = _STRING_STOP.search(text, i)
        end = len(text) if match is None else match.start()
        grew = end > i
        if grew:
            self._string += self._flush_high() + text[i:end]
        if match is None:
            self._show_string()
            return end, grew
        if text[end] == "\\":
            self._escape = "\\"
            if grew:
                self._show_string()
            return end + 1, grew
        self._string += self._flush_high()
        self._end_string()
        return end + 1, grew  # the closing quote shows nothing new

    def _read_escape(self, text: str, i: int) -> tuple[int, bool]:
        assert self._string is not None
        unicode = self._escape.startswith("\\u") or (len(self._escape) == 1 and text[i] == "u")
        want = 6 if unicode else 2
        take = min(len(text) - i, want - len(self._escape))
        self._escape += text[i : i + take]
        i += take
        if len(self._escape) < want:
            return i, False
        escape, self._escape = self._escape, ""
        if escape[1] == "u":
            try:
                code = int(escape[2:], 16)
            except ValueError:
                raise ValueError(f"a bad escape {escape!r} in a string") from None
            char = chr(code)
            if 0xD800 <= code < 0xDC00:  # a high surrogate: its low half comes next
                self._string += self._flush_high()
                self._high = char
                return i, False
            if 0xDC00 <= code < 0xE000 and self._high:
                char = (self._high + char).encode("utf-16", "surrogatepass").decode("utf-16")
                self._high = ""
        else:
            if escape[1] not in _ESCAPES:
                raise ValueError(f"a bad escape {escape!r} in a string")
            char = _ESCAPES[escape[1]]
        self._string += self._flush_high() + char
        self._show_string()
        return i, True

    def _flush_high(self) -> str:
        high, self._high = self._high, ""
        return high

    def _show_string(self) -> None:
        """The string being written, as far as it goes, is the value shown in its place."""
        if not self._string_is_key:
            assert self._string is not None
            self._place(self._string, again=True)

    def _end_string(self) -> None:
        value, self._string = self._string, None
        assert value is not None
        if self._string_is_key:
            frame = self._frames[-1]
            frame.key = value
            frame.expect = "colon"
            return
        self._place(value, again=True)
        self._after_value()

    def _end_atom(self) -> None:
        atom, self._atom = self._atom, ""
        try:
            value = json.loads(atom)
        except ValueError:
            raise ValueError(f"{atom!r} is not a JSON number, true, false or null") from None
        self._place(value)
        self._after_value()

    def _place(self, value: Any, *, again: bool = False) -> None:
        """Put a value that starts now where the text is; ``again``: the value being written
        (a string) grew, and its newer form takes the place of the older."""
        if not self._frames:
            self._root = value
            return
        frame = self._frames[-1]
        if isinstance(frame.container, dict):
            assert frame.key is not None
            frame.container[frame.key] = value
        elif again:
            frame.container[-1] = value
        else:
            frame.container.append(value)

    def _after_value(self) -> None:
        if self._frames:
            self._frames[-1].expect = "next"

    def snapshot(self) -> Any:
        """The value so far (``None`` before any): complete members shared, open containers
        copied, so a later piece never changes a snapshot handed out."""
        if self._root is _MISSING:
            return None
        if not self._frames:
            return self._root
        return _copy_open(self._root, self._frames, 0)


def _copy_open(value: Any, frames: list[_Frame], depth: int) -> Any:
    """``value`` (the container ``frames[depth]``), copied down the path still open."""
    if depth + 1 >= len(frames):
        return dict(value) if isinstance(value, dict) else list(value)
    if isinstance(value, dict):
        copy = dict(value)
        key = frames[depth].key  # the open member is the one being written
        assert key is not None
        copy[key] = _copy_open(copy[key], frames, depth + 1)
        return copy
    items = list(value)
    items[-1] = _copy_open(items[-1], frames, depth + 1)  # the open one is the last
    return items


def _wanted(expect: str) -> str:
    return {
        "value": "a value",
        "key": "a key",
        "colon": "':'",
        "next": "',' or the close",
        "first": "a member or the close",
    }[expect]
