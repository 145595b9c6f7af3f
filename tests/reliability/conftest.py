"""Reliability suite: case counts per category, and the size of the fuzzing runs.

``AGTL_FUZZ=quick`` runs fewer generated cases (a smoke profile); the default is the full
run. With ``AGTL_RELIABILITY_REPORT=path``, what the cases of each category did (checked,
landed, distinct, seconds: see ``Tally``) is written there as JSON at the end of the session
(``make reliability`` prints it).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

QUICK = os.environ.get("AGTL_FUZZ", "full") == "quick"


def cases(full: int, quick: int) -> int:
    """How many generated cases a fuzz test runs in this profile."""
    return quick if QUICK else full


def open_fds() -> Counter[str]:
    """This process's open file descriptors by kind (Linux: /proc/self/fd): ``socket``,
    ``pipe``, ``file`` (paths) and ``other`` (eventfds, epoll, ...)."""
    kinds: Counter[str] = Counter()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile (the directory listing's own fd, for one)
        if target.startswith("socket:"):
            kinds["socket"] += 1
        elif target.startswith("pipe:"):
            kinds["pipe"] += 1
        elif target.startswith("/"):
            kinds["file"] += 1
        else:
            kinds["other"] += 1
    return kinds


def open_sockets() -> int:
    """How many sockets this process holds open."""
    return open_fds()["socket"]


def non_socket_fds() -> Counter[str]:
    """Open descriptors other than sockets (a pool may keep idle sockets between cases)."""
    kinds = open_fds()
    del kinds["socket"]
    return kinds


@attrs.frozen
class PoolState:
    """The HTTP connection pool of an OpenAI provider's client, as seen from outside."""

    idle: int
    in_use: int
    max_idle: int


def pool_state(provider: object) -> PoolState:
    """Connections of the provider's pool (httpx's transport; the OpenAI SDK's client)."""
    pool = provider.client._client._transport._pool  # type: ignore[attr-defined]
    live = [c for c in pool.connections if not c.is_closed()]
    idle = sum(1 for c in live if c.is_idle())
    return PoolState(idle=idle, in_use=len(live) - idle, max_idle=pool._max_keepalive_connections)


class Tally:
    """What the reliability cases did, per category.

    ``checked``: cases whose checks all passed (a case that fails fails its test, so this is
    a count of the work done, not a finding). What varies, and shows the cases did what their
    category claims: ``landed``, the cases with evidence that the cancel, kill or fault landed
    where the category says (a cancel in its phase, a kill inside a write, a retried
    attempt); ``distinct``, how many different cases were drawn; ``seconds``, wall time.
    """

    def __init__(self) -> None:
        self.ran: Counter[str] = Counter()
        self.checked: Counter[str] = Counter()
        self.landed: Counter[str] = Counter()
        self.seconds: dict[str, float] = {}
        self.distinct: dict[str, set[str]] = {}
        self._started: dict[str, float] = {}

    def start(self, category: str, key: object = None) -> None:
        """A case of ``category`` starts; ``key`` tells it apart from others (its repr)."""
        self.ran[category] += 1
        self.distinct.setdefault(category, set()).add(repr(key) if key is not None else "")
        self._started[category] = time.monotonic()

    def hold(
        self, category: str, *, landed: bool | None = None, seconds: float | None = None
    ) -> None:
        """The case's checks passed; ``landed``: it showed evidence of landing. ``seconds``:
        how long the case ran, when it ran before its checks began (concurrent cases)."""
        self.checked[category] += 1
        if landed:
            self.landed[category] += 1
        started = self._started.pop(category, None)
        if seconds is None and started is not None:
            seconds = time.monotonic() - started
        self.seconds[category] = self.seconds.get(category, 0.0) + (seconds or 0.0)

    def rows(self) -> dict[str, dict[str, float]]:
        return {
            category: {
                "ran": ran,
                "checked": self.checked[category],
                "landed": self.landed[category],
                "distinct": len(self.distinct.get(category, ())),
                "seconds": round(self.seconds.get(category, 0.0), 3),
            }
            for category, ran in sorted(self.ran.items())
        }


_TALLY = Tally()


@pytest.fixture(scope="session")
def tally() -> Iterator[Tally]:
    yield _TALLY
    report = os.environ.get("AGTL_RELIABILITY_REPORT")
    if report:
        rows = _TALLY.rows()
        Path(report).write_text(json.dumps({"quick": QUICK, "categories": rows}, indent=2))
