"""The summary sink's file: whole lines after a torn one, short writes, concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest
import trio

import agtl
from agtl import Session
from agtl.reporting import JsonlSink
from agtl.testing import Reply, ScriptedProvider


async def _results(count: int) -> list[agtl.Result[Any]]:
    provider = ScriptedProvider(respond=lambda request: Reply("some words"))

    async def work(session: Session) -> str:
        return (await session.generate_text(prompt="go")).text

    return [await provider.simple_execution(work).result() for _ in range(count)]


async def test_a_record_after_a_torn_line_is_whole(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    first, second = await _results(2)
    sink = JsonlSink(path)
    sink.write(first)
    whole = path.read_bytes()
    # A crash (or a full disk) cut the next record half-way: no newline at the end.
    path.write_bytes(whole + b'{"execution_id": "torn", "summ')
    sink.write(second)
    records, skipped = JsonlSink.read(path)
    assert [r["execution_id"] for r in records] == [first.execution_id, second.execution_id]
    assert skipped == 1
    assert path.read_bytes().endswith(b"\n")


async def test_a_short_write_is_continued_to_the_last_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "runs.jsonl"
    results = await _results(3)
    real_write = os.write
    calls = 0

    def short_write(fd: int, data: Any) -> int:
        nonlocal calls
        calls += 1
        return real_write(fd, bytes(data[:7]))  # the kernel may write less than asked

    monkeypatch.setattr(os, "write", short_write)
    sink = JsonlSink(path)
    for result in results:
        sink.write(result)
    monkeypatch.undo()
    records, skipped = JsonlSink.read(path)
    assert [r["execution_id"] for r in records] == [r.execution_id for r in results]
    assert skipped == 0
    assert calls > 3 * 10  # each record really went out in many pieces


def _append_many(path: str, count: int) -> None:
    results = trio.run(_results, count)
    real_write = os.write

    def short_write(fd: int, data: Any) -> int:
        return real_write(fd, bytes(data[:7]))

    # Short writes, so that a record takes many writes: only the sink's lock keeps the
    # pieces of other processes' records out of it.
    os.write = short_write
    sink = JsonlSink(path)
    for result in results:
        sink.write(result)


def test_concurrent_processes_never_interleave_lines(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(str(path), 40)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert len(lines) - 1 == 120
    assert all(json.loads(line)["status"] == "succeeded" for line in lines[:-1])
