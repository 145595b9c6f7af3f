"""Token usage with provenance: where every figure came from, and ``None`` when unknown."""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

__all__ = ["Provenance", "Usage", "estimate_tokens"]


class Provenance(enum.StrEnum):
    """How a usage figure was obtained, from most to least trustworthy."""

    PROVIDER = "provider"  # reported by the backend (an API's usage block)
    COUNTED = "counted"  # counted exactly by agtl or the backend's own tokenizer
    ESTIMATED = "estimated"  # approximated, e.g. from the characters of delivered text
    UNKNOWN = "unknown"  # nothing to go on: the figures are None

    @property
    def _rank(self) -> int:
        return _RANK[self]

    def weaker(self, other: Provenance) -> Provenance:
        """The less trustworthy of the two: a sum is only as good as its weakest part."""
        return self if self._rank >= other._rank else other


_RANK = {
    Provenance.PROVIDER: 0,
    Provenance.COUNTED: 1,
    Provenance.ESTIMATED: 2,
    Provenance.UNKNOWN: 3,
}


def _total(usage: Usage) -> int | None:
    if usage.input_tokens is None or usage.output_tokens is None:
        return None
    return usage.input_tokens + usage.output_tokens


def _add(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a + b


@attrs.frozen
class Usage:
    """Tokens used by one call or summed over many.

    An unknown figure is ``None``, never ``0``: a sum with an unknown part is unknown.
    ``total_tokens`` defaults to input + output when both are known.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = attrs.field(default=attrs.Factory(_total, takes_self=True))
    cached_input_tokens: int | None = None
    reasoning_tokens: int | None = None
    provenance: Provenance = Provenance.UNKNOWN

    @classmethod
    def zero(cls) -> Usage:
        """Nothing used, known exactly (the usage of an execution that made no call)."""
        return cls(
            0, 0, 0, cached_input_tokens=0, reasoning_tokens=0, provenance=Provenance.COUNTED
        )

    @classmethod
    def sum(cls, usages: Iterable[Usage]) -> Usage:
        """The sum of ``usages``; nothing at all is :meth:`zero`."""
        total: Usage | None = None
        for usage in usages:
            total = usage if total is None else total + usage
        return cls.zero() if total is None else total

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=_add(self.input_tokens, other.input_tokens),
            output_tokens=_add(self.output_tokens, other.output_tokens),
            total_tokens=_add(self.total_tokens, other.total_tokens),
            cached_input_tokens=_add(self.cached_input_tokens, other.cached_input_tokens),
            reasoning_tokens=_add(self.reasoning_tokens, other.reasoning_tokens),
            provenance=self.provenance.weaker(other.provenance),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        """The inverse of :meth:`to_dict`."""
        return cls(
            input_tokens=data["input_tokens"],
            output_tokens=data["output_tokens"],
            total_tokens=data["total_tokens"],
            cached_input_tokens=data["cached_input_tokens"],
            reasoning_tokens=data["reasoning_tokens"],
            provenance=Provenance(data["provenance"]),
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "provenance": self.provenance.value,
        }


def estimate_tokens(text: str) -> int:
    """A rough token count for ``text`` (about four characters a token for English).

    Used only where a backend reports nothing, and always marked ``estimated``.
    """
    return estimate_tokens_of_length(len(text))


def estimate_tokens_of_length(chars: int) -> int:
    """:func:`estimate_tokens` of a text of ``chars`` characters."""
    return math.ceil(chars / 4)
