"""How much of the machine other processes left idle lately, to size llama.cpp's prompt threads.

llama.cpp's threads meet at a barrier after every step of a pass and spin there. When another
process holds a core, a thread that lost its core keeps every other one waiting, and a prompt
of a few dozen tokens that takes 0.2 s with one thread takes seconds with one thread per core.
So before each prompt the provider asks how many cores were idle since it last asked: the
machine's busy time from ``/proc/stat`` minus this process's own (``os.times``), over the
wall time between the two readings. Where ``/proc/stat`` cannot be read, every core counts
as idle (llama.cpp's own default).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Final

__all__ = ["IdleCores"]

#: Readings closer together than this say little: the previous estimate stands.
_MIN_INTERVAL: Final = 0.05
_TICKS: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_busy() -> float | None:
    """Seconds of CPU time every core has spent busy since boot (None: unknown)."""
    try:
        with open("/proc/stat", "rb") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != b"cpu":
        return None
    values = [int(v) for v in fields[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / _TICKS


def _own_busy() -> float:
    times = os.times()
    return times.user + times.system


class IdleCores:
    """Estimates the cores other processes left idle between two calls of :meth:`now`."""

    def __init__(
        self, cores: int | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.cores = cores or os.cpu_count() or 1
        self._clock = clock
        self._at = clock()
        self._machine = _machine_busy()
        self._own = _own_busy()
        self._estimate = float(self.cores)

    def now(self) -> float:
        """Idle cores (0 to ``cores``) since the previous call, or the previous estimate."""
        at = self._clock()
        elapsed = at - self._at
        if elapsed < _MIN_INTERVAL:
            return self._estimate
        machine, own = _machine_busy(), _own_busy()
        if machine is not None and self._machine is not None:
            others = max(0.0, (machine - self._machine) - (own - self._own)) / elapsed
            self._estimate = max(0.0, min(float(self.cores), self.cores - others))
        self._at, self._machine, self._own = at, machine, own
        return self._estimate

    def restart(self) -> None:
        """Start the next window now (the estimate so far stands until it ends)."""
        self._at, self._machine, self._own = self._clock(), _machine_busy(), _own_busy()

    def threads(self) -> int:
        """Prompt threads for now: one per core others left idle (a core counts when at
        least 70% of it was), at least one."""
        return max(1, min(self.cores, int(self.now() + 0.3 + 1e-9)))
