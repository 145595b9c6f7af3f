"""Argument checks for public entry points: agtl's own, and a provider author's.

Each check returns the value (normalised where that helps: seconds as ``float``, money as
``Decimal``) or raises :class:`~agtl.InvalidArgumentError` naming the argument and what is
allowed, so a user's mistake is reported at the call, in one line. A provider written outside
agtl uses these the same way (see ``guides/providers.md``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import TypeVar

import sniffio
import trio

from agtl.errors import InvalidArgumentError, NotInTrioError

__all__ = [
    "check_count",
    "check_decimal",
    "check_items",
    "check_optional_seconds",
    "check_seconds",
    "check_str",
    "require_trio",
    "type_name",
]

T = TypeVar("T")


def type_name(value: object) -> str:
    """The name of ``value``'s type, for messages such as "must be an int, not str"."""
    return type(value).__name__


def check_seconds(name: str, value: object) -> float:
    """A duration in seconds: a real number >= 0 (``inf`` means no limit)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgumentError(name, f"must be a number of seconds, not {type_name(value)}")
    seconds = float(value)
    if math.isnan(seconds) or seconds < 0:
        raise InvalidArgumentError(name, f"must be >= 0 seconds, got {value!r}")
    return seconds


def check_optional_seconds(name: str, value: object) -> float | None:
    """Like :func:`check_seconds` but ``None`` stays ``None`` (no limit)."""
    if value is None:
        return None
    return check_seconds(name, value)


def check_count(name: str, value: object, *, minimum: int = 0) -> int:
    """A whole number >= ``minimum`` (``bool`` is refused: ``True`` is not a count)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(name, f"must be an int, not {type_name(value)}")
    if value < minimum:
        raise InvalidArgumentError(name, f"must be >= {minimum}, got {value}")
    return value


def check_decimal(name: str, value: object) -> Decimal:
    """A non-negative money amount as ``Decimal``; floats go through ``str`` to stay exact."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float | str):
        raise InvalidArgumentError(
            name, f"must be a Decimal, int, float or numeric str, not {type_name(value)}"
        )
    try:
        amount = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise InvalidArgumentError(name, f"is not a number: {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise InvalidArgumentError(name, f"must be a finite amount >= 0, got {value!r}")
    return amount


def check_items(
    name: str, items: Sequence[object], kind: type[T], what: str, *, allow_empty: bool = False
) -> tuple[T, ...]:
    """Every item of ``items`` is a ``kind`` (described as ``what``); errors name the index."""
    if not items and not allow_empty:
        raise InvalidArgumentError(name, f"needs at least one item, each {what}")
    for index, item in enumerate(items):
        if not isinstance(item, kind):
            raise InvalidArgumentError(f"{name}[{index}]", f"must be {what}, not {type_name(item)}")
    return tuple(items)  # type: ignore[arg-type]


def check_named(
    name: str, items: object, kind: type[T], label: str, decorator: str
) -> tuple[T, ...]:
    """A list of ``kind`` values (``agtl.<label>``, made with ``@agtl.<decorator>``) whose
    ``name`` attributes differ: ``tools=``, ``input_guardrails=``, ..."""
    if isinstance(items, kind | str) or not isinstance(items, Sequence):
        raise InvalidArgumentError(
            name,
            f"must be a list of agtl.{label} (made with @agtl.{decorator}), not {type_name(items)}",
        )
    seen: set[str] = set()
    for index, item in enumerate(items):
        if not isinstance(item, kind):
            hint = f" (decorate the function with @agtl.{decorator})" if callable(item) else ""
            raise InvalidArgumentError(
                f"{name}[{index}]", f"must be an agtl.{label}, not {type_name(item)}{hint}"
            )
        named = getattr(item, "name", None)
        if named in seen:
            raise InvalidArgumentError(
                f"{name}[{index}]",
                f"a second {label.lower()} named {named!r}: {label.lower()} names must differ",
            )
        seen.add(str(named))
    return tuple(items)


def check_str(name: str, value: object, *, allow_empty: bool = False) -> str:
    """A ``str``; empty or blank only with ``allow_empty``."""
    if not isinstance(value, str):
        raise InvalidArgumentError(name, f"must be a str, not {type_name(value)}")
    if not allow_empty and not value.strip():
        raise InvalidArgumentError(name, "must not be empty")
    return value


def require_trio(what: str) -> None:
    """Raise :class:`~agtl.NotInTrioError` unless called from a trio task.

    For a provider's own awaitable entry points (``aclose``): from asyncio code they would
    otherwise fail deep inside trio with an unrelated error.
    """
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        try:
            library: str | None = sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            library = None
        raise NotInTrioError(what, library) from None
