"""Execution ids: unique within a process and across processes, and not half zeros."""

from __future__ import annotations

import subprocess
import sys

from agtl.execution import _new_execution_id


def test_ids_are_unique_and_look_random() -> None:
    ids = [_new_execution_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert not any("00000000" in i[16:] for i in ids[:1000])  # the counter is spread


def test_another_process_has_another_prefix() -> None:
    code = "from agtl.execution import _new_execution_id; print(_new_execution_id())"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert other[:16] != _new_execution_id()[:16]
