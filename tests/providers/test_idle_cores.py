"""The local provider's prompt threads follow what other processes leave idle."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest

from agtl_llamacpp import _cpu
from agtl_llamacpp._cpu import IdleCores


def test_threads_follow_the_cores_others_left_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"now": 100.0, "machine": 0.0, "own": 0.0}
    monkeypatch.setattr(_cpu, "_machine_busy", lambda: clock["machine"])
    monkeypatch.setattr(_cpu, "_own_busy", lambda: clock["own"])
    idle = IdleCores(cores=4, clock=lambda: clock["now"])

    def second(machine: float, own: float) -> None:
        clock["now"] += 1.0
        clock["machine"] += machine
        clock["own"] += own

    second(machine=0.1, own=0.1)  # only this process worked
    assert idle.threads() == 4
    second(machine=2.0, own=0.5)  # others held 1.5 cores
    assert idle.now() == pytest.approx(2.5)
    assert idle.threads() == 2  # half a core is not a core
    second(machine=1.3, own=0.0)  # others held 1.3: 2.7 idle, 70% of the third counts
    assert idle.threads() == 3
    second(machine=4.0, own=0.0)  # everything busy elsewhere
    assert idle.threads() == 1  # never fewer than one
    clock["now"] += 0.01  # too soon to tell: the last estimate stands
    assert idle.threads() == 1
    idle.restart()
    second(machine=0.0, own=0.0)
    assert idle.threads() == 4


def test_a_process_spinning_shows_as_a_busy_core() -> None:
    """On the real machine: a spinning process is seen as most of a core taken."""
    idle = IdleCores()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: sum(range(10_000))"])
    try:
        time.sleep(0.3)  # it runs
        idle.restart()
        time.sleep(0.6)
        busy: Any = idle.cores - idle.now()
    finally:
        spinner.kill()
        spinner.wait(10)
    assert busy >= 0.7, busy
