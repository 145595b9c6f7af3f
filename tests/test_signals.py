"""CancelSignal and any_of on their own."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import trio

import agtl
from agtl import CancelSignal


async def test_cancel_is_once_with_first_reason() -> None:
    signal = CancelSignal()
    assert not signal.cancelled
    assert signal.reason is None
    signal.cancel("first")
    signal.cancel("second")
    assert signal.cancelled
    assert signal.reason == "first"


async def test_wait_wakes_on_cancel_from_another_thread() -> None:
    signal = CancelSignal()

    def fire() -> None:
        signal.cancel("thread")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(signal.wait)
        await trio.sleep(0.01)
        thread = threading.Thread(target=fire)
        thread.start()
        with trio.fail_after(5):
            await signal.wait()
        thread.join()
    assert signal.reason == "thread"


async def test_after_fires_on_trio_clock(autojump_clock: Any) -> None:
    signal = CancelSignal.after(3, reason="slow")
    assert not signal.cancelled
    await signal.wait()
    assert trio.current_time() == pytest.approx(3)
    assert signal.cancelled
    assert signal.reason == "slow"


def test_after_outside_trio_is_a_clear_error() -> None:
    with pytest.raises(agtl.InvalidArgumentError, match="inside a trio run"):
        CancelSignal.after(1)


async def test_any_of_forwards_the_first_reason_and_earliest_deadline(
    autojump_clock: Any,
) -> None:
    a, b = CancelSignal(), CancelSignal()
    combined = agtl.any_of(a, b, CancelSignal.after(5), CancelSignal.after(2, reason="two"))
    assert combined.deadline == pytest.approx(trio.current_time() + 2)
    b.cancel("b went")
    a.cancel("a went")
    assert combined.cancelled
    assert combined.reason == "b went"


async def test_any_of_deadline_reason(autojump_clock: Any) -> None:
    combined = agtl.any_of(CancelSignal(), CancelSignal.after(2, reason="two"))
    await combined.wait()
    assert combined.reason == "two"


def test_listeners_are_removed() -> None:
    signal = CancelSignal()
    calls: list[str] = []
    key = signal.add_listener(lambda s: calls.append("fired"))
    signal.remove_listener(key)
    signal.cancel()
    assert calls == []
    signal.add_listener(lambda s: calls.append("late"))
    assert calls == ["late"]


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: CancelSignal().cancel(3), "reason"),  # type: ignore[arg-type]
        (lambda: agtl.any_of(), "signals"),
        (lambda: agtl.any_of("x"), "signals[0]"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_name_the_argument(call: Any, argument: str) -> None:
    with pytest.raises(agtl.InvalidArgumentError) as info:
        call()
    assert info.value.argument == argument


async def test_after_rejects_negative_seconds() -> None:
    with pytest.raises(agtl.InvalidArgumentError, match="seconds"):
        CancelSignal.after(-1)
