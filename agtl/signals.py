"""External cancellation: :class:`CancelSignal`, trio's counterpart of an AbortController.

A signal is cancelled once, from any thread, with an optional reason. Executions that were
given it stop as soon as it fires. A signal may also carry a deadline on trio's clock
(:meth:`CancelSignal.after`), which executions apply as a cancel-scope deadline, so timeouts
cost no timer task and follow trio's mock clocks in tests.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable

import trio

from agtl._trio_thread import call_in_run, current_token
from agtl.errors import InvalidArgumentError
from agtl.validation import check_items, check_seconds

__all__ = ["CancelSignal", "any_of"]

Listener = Callable[["CancelSignal"], None]


class CancelSignal:
    """A one-shot, thread-safe cancellation request that executions listen to."""

    __slots__ = (
        "__weakref__",
        "_cancelled",
        "_deadline",
        "_deadline_reason",
        "_listeners",
        "_lock",
        "_next_listener",
        "_reason",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._reason: str | None = None
        self._deadline: float | None = None
        self._deadline_reason: str | None = None
        self._listeners: dict[int, Listener] = {}
        self._next_listener = 0

    @classmethod
    def after(cls, seconds: float, *, reason: str | None = None) -> CancelSignal:
        """A signal that fires ``seconds`` from now on the current trio run's clock."""
        seconds = check_seconds("seconds", seconds)
        try:
            now = trio.current_time()
        except RuntimeError:
            raise InvalidArgumentError(
                "CancelSignal.after",
                "must be called inside a trio run (the deadline uses trio's clock); "
                "outside one, create a CancelSignal() and call cancel() yourself",
            ) from None
        signal = cls()
        signal._deadline = now + seconds
        signal._deadline_reason = reason or f"deadline of {seconds:g}s passed"
        return signal

    def cancel(self, reason: str | None = None) -> None:
        """Fire the signal. Safe from any thread; only the first call has an effect."""
        if reason is not None and not isinstance(reason, str):
            raise InvalidArgumentError(
                "reason", f"must be a str or None, not {type(reason).__name__}"
            )
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            self._reason = reason
            listeners = list(self._listeners.values())
            self._listeners.clear()
        for listener in listeners:
            listener(self)

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called or (inside a trio run) the deadline passed."""
        return self._cancelled or self._deadline_passed()

    @property
    def reason(self) -> str | None:
        """The reason given to :meth:`cancel`, or the deadline's reason once it passed."""
        if self._cancelled:
            return self._reason
        if self._deadline_passed():
            return self._deadline_reason
        return None

    @property
    def deadline(self) -> float | None:
        """The trio-clock deadline at which the signal fires by itself, if it has one."""
        return self._deadline

    @property
    def deadline_reason(self) -> str | None:
        """The reason reported when the deadline is what fired the signal."""
        return self._deadline_reason

    async def wait(self) -> None:
        """Wait until the signal fires (by :meth:`cancel` or by its deadline)."""
        if self.cancelled:
            await trio.lowlevel.checkpoint()
            return
        fired = trio.Event()
        token = trio.lowlevel.current_trio_token()
        key = self.add_listener(lambda _signal: call_in_run(token, fired.set))
        try:
            deadline = math.inf if self._deadline is None else self._deadline
            with trio.move_on_at(deadline):
                await fired.wait()
        finally:
            self.remove_listener(key)

    def add_listener(self, listener: Listener) -> int:
        """Call ``listener(signal)`` when :meth:`cancel` fires it (at once if it already has).

        Returns a key for :meth:`remove_listener`. Deadlines do not call listeners: whoever
        cares about the deadline reads :attr:`deadline` and schedules it on its own clock.
        """
        with self._lock:
            key = self._next_listener
            self._next_listener += 1
            if not self._cancelled:
                self._listeners[key] = listener
                return key
        listener(self)
        return key

    def remove_listener(self, key: int) -> None:
        """Forget a listener added by :meth:`add_listener` (unknown keys are ignored)."""
        with self._lock:
            self._listeners.pop(key, None)

    def _deadline_passed(self) -> bool:
        if self._deadline is None or current_token() is None:
            return False
        return trio.current_time() >= self._deadline

    def __repr__(self) -> str:
        state = "cancelled" if self._cancelled else "pending"
        deadline = "" if self._deadline is None else f", deadline={self._deadline:.3f}"
        return f"CancelSignal({state}{deadline})"


def any_of(*signals: CancelSignal) -> CancelSignal:
    """A signal that fires when the first of ``signals`` fires, with that signal's reason.

    Its deadline is the earliest of theirs. The parents hold it only weakly, so combining
    long-lived signals does not keep every combination alive.
    """
    check_items("signals", signals, CancelSignal, "an agtl.CancelSignal")
    combined = CancelSignal()
    with_deadline = [s for s in signals if s.deadline is not None]
    if with_deadline:
        earliest = min(with_deadline, key=lambda s: s.deadline or math.inf)
        combined._deadline = earliest.deadline
        combined._deadline_reason = earliest.deadline_reason
    ref = weakref.ref(combined)

    def forward(parent: CancelSignal) -> None:
        child = ref()
        if child is not None:
            child.cancel(parent.reason)

    for signal in signals:
        signal.add_listener(forward)
    return combined
