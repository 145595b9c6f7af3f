"""Prices per million tokens, a bundled dated table for well-known hosted models, and cost.

Cost is a ``Decimal`` in US dollars. ``None`` means the price is unknown (never guessed);
``Decimal(0)`` means free, as for local models.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Final, TypeVar

import attrs

from agtl.errors import InvalidArgumentError
from agtl.usage import Usage
from agtl.validation import check_decimal, check_str

__all__ = ["BUNDLED_PRICING", "Price", "PricingTable"]

_MILLION: Final = Decimal(1_000_000)
V = TypeVar("V")


def _input_rate(value: object) -> Decimal:
    return check_decimal("input", value)


def _output_rate(value: object) -> Decimal:
    return check_decimal("output", value)


def _cached_rate(value: object) -> Decimal | None:
    return None if value is None else check_decimal("cached_input", value)


@attrs.frozen
class Price:
    """US dollars per million tokens. ``cached_input`` defaults to the ``input`` rate."""

    input: Decimal = attrs.field(converter=_input_rate)
    output: Decimal = attrs.field(converter=_output_rate)
    cached_input: Decimal | None = attrs.field(default=None, converter=_cached_rate)

    @classmethod
    def free(cls) -> Price:
        return _FREE

    def cost(self, usage: Usage) -> Decimal | None:
        """The cost of ``usage``, or ``None`` when its input or output tokens are unknown.

        Cached input tokens that were not reported are charged at the full input rate.
        """
        if usage.input_tokens is None or usage.output_tokens is None:
            return None
        cached = min(usage.cached_input_tokens or 0, usage.input_tokens)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        total = (
            (usage.input_tokens - cached) * self.input
            + cached * cached_rate
            + usage.output_tokens * self.output
        )
        return total / _MILLION


def _prices(mapping: Mapping[str, Price]) -> dict[str, Price]:
    return _normalized(mapping, "prices")


def _aliases(mapping: Mapping[str, str]) -> dict[str, str]:
    return _normalized(mapping, "aliases")


_FREE: Final = Price(0, 0, 0)


# Dated suffixes that providers append to a model family: "-2024-08-06", "-20250514", "-latest".
_DATED_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


@attrs.frozen
class PricingTable:
    """Model name → :class:`Price`, with aliases and dated-suffix resolution.

    Lookup tries, in order: the exact name, an alias, the name after a ``vendor/`` prefix,
    and the name without a dated suffix. Names are compared case-insensitively.
    """

    prices: Mapping[str, Price] = attrs.field(converter=_prices)
    aliases: Mapping[str, str] = attrs.field(factory=dict, converter=_aliases)
    as_of: str | None = None

    def lookup(self, model: str) -> Price | None:
        for candidate in self._candidates(model.lower()):
            target = self.aliases.get(candidate, candidate)
            price = self.prices.get(target)
            if price is not None:
                return price
        return None

    def merged(self, overrides: PricingTable) -> PricingTable:
        """This table with ``overrides`` winning on every name they define."""
        return PricingTable(
            prices={**self.prices, **overrides.prices},
            aliases={**self.aliases, **overrides.aliases},
            as_of=self.as_of,
        )

    @staticmethod
    def _candidates(name: str) -> list[str]:
        names = [name]
        if "/" in name:
            names.append(name.rsplit("/", 1)[1])
        names.extend(_DATED_SUFFIX.sub("", n) for n in list(names) if _DATED_SUFFIX.search(n))
        return names


def _normalized(mapping: Mapping[str, V], argument: str) -> dict[str, V]:
    if not isinstance(mapping, Mapping):
        raise InvalidArgumentError(argument, f"must be a mapping, not {type(mapping).__name__}")
    result: dict[str, V] = {}
    for key, value in mapping.items():
        check_str(f"{argument} key", key)
        if argument == "prices" and not isinstance(value, Price):
            raise InvalidArgumentError(
                f"{argument}[{key!r}]", f"must be an agtl.Price, not {type(value).__name__}"
            )
        result[key.lower()] = value
    return result


def _p(input_: str, output: str, cached: str | None = None) -> Price:
    return Price(input_, output, cached)


BUNDLED_PRICING: Final = PricingTable(
    as_of="2025-08-15",
    prices={
        # OpenAI
        "gpt-5": _p("1.25", "10.00", "0.125"),
        "gpt-5-mini": _p("0.25", "2.00", "0.025"),
        "gpt-5-nano": _p("0.05", "0.40", "0.005"),
        "gpt-4.1": _p("2.00", "8.00", "0.50"),
        "gpt-4.1-mini": _p("0.40", "1.60", "0.10"),
        "gpt-4.1-nano": _p("0.10", "0.40", "0.025"),
        "gpt-4o": _p("2.50", "10.00", "1.25"),
        "gpt-4o-mini": _p("0.15", "0.60", "0.075"),
        "o3": _p("2.00", "8.00", "0.50"),
        "o3-mini": _p("1.10", "4.40", "0.55"),
        "o4-mini": _p("1.10", "4.40", "0.275"),
        # Anthropic (cached = cache read rate)
        "claude-opus-4-1": _p("15.00", "75.00", "1.50"),
        "claude-sonnet-4": _p("3.00", "15.00", "0.30"),
        "claude-3-5-haiku": _p("0.80", "4.00", "0.08"),
        # Google (prompts up to 200k tokens)
        "gemini-2.5-pro": _p("1.25", "10.00", "0.31"),
        "gemini-2.5-flash": _p("0.30", "2.50", "0.075"),
        "gemini-2.0-flash": _p("0.10", "0.40", "0.025"),
    },
    aliases={
        "chatgpt-4o-latest": "gpt-4o",
        "claude-sonnet-4-0": "claude-sonnet-4",
        "claude-opus-4-1-20250805": "claude-opus-4-1",
        "claude-3-5-haiku-latest": "claude-3-5-haiku",
    },
)
