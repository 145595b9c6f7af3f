"""Cancellation of one execution: why and when it was cancelled, written once, when it happens.

One :class:`Cancellation` per execution owns everything about stopping it: cancel requests
(from the handle, a signal, a usage limit; any thread), the deadlines (``timeout=`` and
signal deadlines), the execution's cancel scope, and the one recorded cause. The rest of the
core asks it; nothing else cancels the execution's scope.

The cause is recorded at the moment the scope is cancelled, as trio records a scope's own
cancel reason: a request records itself when it cancels the scope; the earliest deadline is
armed on the scope with its cause when the execution begins, and trio cancels the scope at
exactly that time, so that cause and moment stand unless something else stopped the scope
first. Two things stop the scope without being a cancel, and are recorded when they happen
so that a later deadline or request is not mistaken for the cause: the terminal event
(auto-abort) and a streaming workflow's failure (its driver nursery cancels itself).
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Sequence
from typing import Final

import attrs
import trio

from agtl._trio_thread import call_in_run, current_token
from agtl._vocabulary import CancelInfo, CancelSource
from agtl.signals import CancelSignal

__all__ = ["Cancellation"]

#: Guards requests and freezing. One lock for every execution: it is held for a few
#: instructions, and a lock per execution would cost memory when thousands are alive.
_LOCK: Final = threading.Lock()


@attrs.frozen
class _Armed:
    """A deadline set on the scope, with the cause it will be."""

    at: float  # trio clock
    source: CancelSource
    reason: str | None


class Cancellation:
    """Requests, deadlines, the scope, and the one recorded cause of an execution's cancel."""

    __slots__ = (
        "_armed",
        "_cause",
        "_frozen",
        "_listeners",
        "_request",
        "_scope",
        "_soft",
        "_soft_landed",
        "_start",
        "_stopped",
        "_token",
    )

    def __init__(self) -> None:
        self._request: tuple[CancelSource, str | None] | None = None
        self._cause: CancelInfo | None = None
        self._stopped = False  # the scope was stopped by the terminal event or a failure
        self._armed: _Armed | None = None
        self._scope: trio.CancelScope | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._start = 0.0
        self._frozen = False
        self._listeners: Sequence[tuple[CancelSignal, int]] = ()
        #: A soft stop asked for: (after "call" or "step", reason, grace seconds or None).
        self._soft: tuple[str, str | None, float | None] | None = None
        self._soft_landed = False

    # -- requests (any thread) --------------------------------------------------------------
    def request(self, source: CancelSource, reason: str | None) -> None:
        """Ask the execution to stop. Any thread; the first request wins; no-op once frozen.

        Before the execution began, the request waits and :meth:`begin` applies it (the
        workflow then never starts).
        """
        with _LOCK:
            if self._frozen or self._request is not None:
                return
            self._request = (source, reason)
            token, scope = self._token, self._scope
        if scope is not None and token is not None:
            call_in_run(token, self._apply)

    @property
    def requested(self) -> bool:
        return self._request is not None

    def request_soft(self, after: str, reason: str | None, grace: float | None) -> None:
        """Ask the execution to stop at its next boundary: once the running model call ends
        (``after="call"``) or the running step with its tool calls (``"step"``). Any thread;
        the first soft request wins. With ``grace``, a hard cancel follows that many seconds
        later if it has not stopped by then."""
        with _LOCK:
            if self._frozen or self._request is not None or self._soft is not None:
                return
            self._soft = (after, reason, grace)
            token, scope = self._token, self._scope
        if grace is not None and token is not None and scope is not None:
            call_in_run(token, functools.partial(self._escalate_after, grace, reason))

    def at_boundary(self, boundary: str) -> bool:
        """The core reached a boundary: a model call ended (``"call"``) or a new step is about
        to begin (``"step"``). Whether a soft stop lands here (it is then requested)."""
        soft = self._soft
        if soft is None or self._request is not None:
            return False
        after, reason, _ = soft
        if after == "step" and boundary == "call":
            return False
        self._soft_landed = True
        self.request(CancelSource.HANDLE, reason)
        return True

    def _escalate_after(self, grace: float, reason: str | None) -> None:
        """On the trio run: a hard cancel ``grace`` seconds from now, armed as a deadline."""
        scope = self._scope
        if scope is None or scope.cancel_called:
            return
        at = trio.current_time() + grace
        if self._armed is None or at < self._armed.at:
            why = f"the soft stop did not land within {grace:g}s: escalated to a cancel"
            self._armed = _Armed(at, CancelSource.HANDLE, f"{why} ({reason})" if reason else why)
            scope.deadline = at

    # -- on the trio run ----------------------------------------------------------------------
    def begin(
        self,
        scope: trio.CancelScope,
        *,
        start: float,
        timeout: float | None,
        signals: Sequence[CancelSignal],
    ) -> bool:
        """Take ``scope`` (just entered) as the execution's; whether the workflow may start.

        Arms the earliest deadline, listens to the signals, and applies a request that came
        before the start. The workflow does not start when a cancel or a deadline got there
        first.
        """
        self._scope = scope
        self._start = start
        self._token = current_token()
        armed = [
            _Armed(s.deadline, CancelSource.SIGNAL, s.deadline_reason)
            for s in signals
            if s.deadline is not None
        ]
        if timeout is not None:
            armed.append(_Armed(start + timeout, CancelSource.TIMEOUT, f"timeout={timeout:g}s"))
        if armed:
            self._armed = min(armed, key=lambda a: a.at)
            scope.deadline = self._armed.at
        if signals:
            self._listeners = [(s, s.add_listener(self._on_signal)) for s in signals]
        soft = self._soft
        if soft is not None and soft[2] is not None:  # a soft stop before the start
            self._escalate_after(soft[2], soft[1])
        self._apply()
        deadline = math.inf if self._armed is None else self._armed.at
        return not scope.cancel_called and trio.current_time() < deadline

    def end(self) -> None:
        """Stop listening to the signals (the execution's task is over)."""
        for signal, key in self._listeners:
            signal.remove_listener(key)
        self._listeners = ()

    def stop(self, why: str) -> None:
        """Stop the scope for a reason that is not a cancel (the terminal event was delivered).

        Later requests and deadlines change nothing: the outcome is being decided already.
        """
        if self._scope is not None and not self._scope.cancel_called:
            self._stopped = True
            self._scope.cancel(why)

    def failed(self) -> None:
        """Note that the workflow failed; a cancel after this is not the cause."""
        if self._cause is None and not self._is_deadline():
            self._stopped = True

    def _on_signal(self, signal: CancelSignal) -> None:
        self.request(CancelSource.SIGNAL, signal.reason)

    def _apply(self) -> None:
        """Turn a pending request into a cancel of the scope, recording it as the cause."""
        scope, request = self._scope, self._request
        if scope is None or request is None or self._frozen or self._cause is not None:
            return
        if scope.cancel_called:
            return  # a deadline, the terminal event or a failure got there first
        source, reason = request
        mode = "soft" if self._soft_landed else "hard"
        self._cause = CancelInfo(source, reason, trio.current_time() - self._start, mode)
        scope.cancel(reason or source.value)

    def _is_deadline(self) -> bool:
        """Whether the armed deadline is what cancelled the scope (recording it if so)."""
        armed, scope = self._armed, self._scope
        if self._cause is not None or self._stopped or armed is None or scope is None:
            return False
        if scope.cancel_called and trio.current_time() >= armed.at:
            self._cause = CancelInfo(armed.source, armed.reason, max(0.0, armed.at - self._start))
            return True
        return False

    # -- reading ------------------------------------------------------------------------------
    def cause(self) -> CancelInfo | None:
        """What cancelled the execution's scope, or ``None`` if nothing of ours did."""
        self._is_deadline()
        return self._cause

    def before_start(self) -> CancelInfo:
        """The cause for an execution that never began (a request, else a passed deadline)."""
        cause = self.cause()
        if cause is not None:
            return cause
        if self._request is not None:
            source, reason = self._request
            return CancelInfo(source, reason, 0.0)
        armed = self._armed
        if armed is not None:
            return CancelInfo(armed.source, armed.reason, max(0.0, armed.at - self._start))
        return CancelInfo(CancelSource.HANDLE, None, 0.0)

    @property
    def reason(self) -> str | None:
        """Why the execution is being stopped: the request's reason, or a passed deadline's."""
        if self._request is not None:
            source, reason = self._request
            return reason or source.value
        if self._armed is not None and trio.current_time() >= self._armed.at:
            return self._armed.reason
        return None

    def freeze(self) -> None:
        """The outcome is decided: every later request is a no-op."""
        with _LOCK:
            self._frozen = True
