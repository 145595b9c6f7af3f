"""Exception groups as the core sees them: leaves, cancellations, and the lone real error.

trio wraps errors from nurseries in groups. The core looks through them in a few fixed ways,
written once here: a group made only of ``trio.Cancelled`` is a cancellation, and a group
holding one real error is that error.
"""

from __future__ import annotations

from typing import NoReturn

import trio

__all__ = [
    "collapse",
    "contains_cancelled",
    "is_cancellation",
    "leaves",
    "lone_leaf",
    "raise_collapsed",
    "unwrap",
]


def leaves(exc: BaseException) -> list[BaseException]:
    """Every non-group exception inside ``exc`` (``[exc]`` for a plain exception)."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


def lone_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The group's only leaf, if it has exactly one (a nursery artifact around one error)."""
    found = leaves(group)
    return found[0] if len(found) == 1 else None


def contains_cancelled(exc: BaseException) -> bool:
    """Whether any leaf is a ``trio.Cancelled``."""
    return any(isinstance(leaf, trio.Cancelled) for leaf in leaves(exc))


def is_cancellation(exc: BaseException) -> bool:
    """True for ``trio.Cancelled``, or a group made only of them."""
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(trio.Cancelled)[1] is None
    return False


def unwrap(exc: BaseException) -> BaseException:
    """A group holding one real error becomes that error; ``Cancelled`` leaves are dropped."""
    real = [leaf for leaf in leaves(exc) if not isinstance(leaf, trio.Cancelled)]
    return real[0] if len(real) == 1 else exc


def collapse(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """What to raise for a nursery's group: its lone leaf, one ``Cancelled`` for a group made
    only of them (a caller catching ``trio.Cancelled`` must see one), else the group."""
    if is_cancellation(group):
        return leaves(group)[0]
    leaf = lone_leaf(group)
    return group if leaf is None else leaf


def raise_collapsed(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Raise what :func:`collapse` makes of ``group`` (the group itself if nothing simpler)."""
    collapsed = collapse(group)
    if collapsed is group:
        raise group
    # Hide the group as context, but keep the error's own cause (``raise ... from None``
    # would erase it).
    raise collapsed from collapsed.__cause__
