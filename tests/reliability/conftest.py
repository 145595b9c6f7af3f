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
    """Counts cases per category: ``ran`` when a case starts, ``held`` once its checks pass,
    and ``cancelled`` when the execution it held for was really cancelled."""

    def __init__(self) -> None:
        self.ran: Counter[str] = Counter()
        self.held: Counter[str] = Counter()
        self.cancelled: Counter[str] = Counter()

    def start(self, category: str) -> None:
        self.ran[category] += 1

    def hold(self, category: str, *, cancelled: bool | None = None) -> None:
        self.held[category] += 1
        if cancelled:
            self.cancelled[category] += 1


_TALLY = Tally()


@pytest.fixture(scope="session")
def tally() -> Iterator[Tally]:
    yield _TALLY
    report = os.environ.get("AGTL_RELIABILITY_REPORT")
    if report:
        rows = {
            c: {"ran": n, "held": _TALLY.held[c], "cancelled": _TALLY.cancelled[c]}
            for c, n in sorted(_TALLY.ran.items())
        }
        Path(report).write_text(json.dumps({"quick": QUICK, "categories": rows}, indent=2))
