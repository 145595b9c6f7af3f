"""Reliability suite: case counts per category, and the size of the fuzzing runs.

``AGTL_FUZZ=quick`` runs fewer generated cases (a smoke profile); the default is the full
run. With ``AGTL_RELIABILITY_REPORT=path``, how many cases ran and held per category is
written there as JSON at the end of the session (``make reliability`` prints it).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

QUICK = os.environ.get("AGTL_FUZZ", "full") == "quick"


def cases(full: int, quick: int) -> int:
    """How many generated cases a fuzz test runs in this profile."""
    return quick if QUICK else full


def open_sockets() -> int:
    """How many sockets this process holds open (Linux: from /proc/self/fd)."""
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:
            continue  # closed meanwhile
    return count


class Tally:
    """Counts cases per category: ``ran`` when a case starts, ``held`` once its checks pass."""

    def __init__(self) -> None:
        self.ran: Counter[str] = Counter()
        self.held: Counter[str] = Counter()

    def start(self, category: str) -> None:
        self.ran[category] += 1

    def hold(self, category: str) -> None:
        self.held[category] += 1


_TALLY = Tally()


@pytest.fixture(scope="session")
def tally() -> Iterator[Tally]:
    yield _TALLY
    report = os.environ.get("AGTL_RELIABILITY_REPORT")
    if report:
        rows = {c: {"ran": n, "held": _TALLY.held[c]} for c, n in sorted(_TALLY.ran.items())}
        Path(report).write_text(json.dumps({"quick": QUICK, "categories": rows}, indent=2))
