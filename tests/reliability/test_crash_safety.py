"""SIGKILL at random moments while summaries, conversations and KV-cache state are written.

A child process (crash_child.py) writes in a loop and reports each completed write; the
test kills it at a random moment, then reads everything back as a restarted process would:
nothing corrupt is loaded, and everything reported as committed is there.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

from agtl import Conversation, Session
from agtl.reporting import JsonlSink
from agtl_llamacpp import LlamaCppProvider
from tests.reliability.conftest import QUICK, Tally, cases

ROOT = Path(__file__).resolve().parents[2]


#: How long the child may take to say it is ready, or to report its first write (the kv mode
#: loads the model first).
PIPE_DEADLINE = 120.0


class ChildLines:
    """Lines from a child's stdout, each read under a deadline (a silent child fails the
    test instead of hanging it)."""

    def __init__(self, child: subprocess.Popen[bytes]) -> None:
        assert child.stdout is not None
        self._fd = child.stdout.fileno()
        self._buffer = b""

    def next(self, deadline: float = PIPE_DEADLINE) -> str:
        end = time.monotonic() + deadline
        while b"\n" not in self._buffer:
            remaining = end - time.monotonic()
            ready, _, _ = select.select([self._fd], [], [], max(0.0, remaining))
            if not ready:
                raise AssertionError(f"the crash child said nothing for {deadline:g}s")
            chunk = os.read(self._fd, 65536)
            if not chunk:
                raise AssertionError("the crash child closed its output early")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def rest(self) -> list[str]:
        """Everything left once the child is dead (its pipe is at end of file)."""
        while chunk := os.read(self._fd, 65536):
            self._buffer += chunk
        return self._buffer.decode().splitlines()


def run_and_kill(mode: str, directory: Path, after: float) -> list[str]:
    """Start the child, SIGKILL it ``after`` seconds into its loop; what it committed."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.crash_child", mode, str(directory)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    lines = ChildLines(child)
    try:
        assert lines.next() == "ready"
        # The loop starts after imports (and, for kv, the model load): wait for its first write
        # with a deadline, then let it run for the drawn time before the kill.
        first = lines.next()
        assert first.startswith("committed"), first
        time.sleep(after)  # the kill moment is what is random here; nothing waits on timing
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=60)
    rest = lines.rest()
    assert child.stdout is not None
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    return [line.split(" ", 1)[1] for line in [first, *rest] if line.startswith("committed ")]


def kill_schedule(name: str, count: int, low: float, high: float) -> list[float]:
    """The kill moments of a test, from a seed that is printed (pytest shows it with a
    failure; ``AGTL_FUZZ_SEED=<seed>`` replays the same schedule)."""
    seed = int(os.environ.get("AGTL_FUZZ_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    schedule = [rng.uniform(low, high) for _ in range(count)]
    print(f"{name}: seed={seed} kill after {[round(t, 3) for t in schedule]} s")
    return schedule


def temp_files(directory: Path) -> list[str]:
    """Temporary files left in ``directory`` (hidden names: ours all start with a dot)."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def require_landed(category: str, landed: int, rounds: int) -> None:
    """In the full profile, at least one kill must have landed inside a write: otherwise the
    test never saw the window it exists for (the quick profile only reports the count)."""
    print(f"{category}: {landed} of {rounds} kills landed inside a write")
    if not QUICK:
        assert landed >= 1, f"{category}: no kill of {rounds} landed inside a write"


def test_summary_sink_survives_sigkill(tmp_path: Path, tally: Tally) -> None:
    category = "SIGKILL while writing: summary sink (JSON lines)"
    schedule = kill_schedule("sink", cases(full=15, quick=3), 0.0, 0.3)
    committed_before: set[str] = set()
    landed = 0
    for after in schedule:
        tally.start(category, key=round(after, 3))
        committed = run_and_kill("sink", tmp_path, after)
        assert temp_files(tmp_path) == []  # the sink appends in place: nothing to sweep
        path = tmp_path / "summaries.jsonl"
        records, skipped = JsonlSink.read(path)
        torn = not path.read_bytes().endswith(b"\n")  # the kill landed inside a write
        landed += torn
        # The file is never repaired between rounds: each round appends after the last
        # one's torn tail. Each kill tears one line at most, and no record that was
        # committed (in any round) is lost, the ones after a torn line included.
        assert skipped <= landed, (skipped, landed)
        committed_before |= set(committed)
        ids = {record["execution_id"] for record in records}
        assert committed_before <= ids, committed_before - ids
        tally.hold(category, landed=torn)
    require_landed(category, landed, len(schedule))


def test_saved_conversation_survives_sigkill(tmp_path: Path, tally: Tally) -> None:
    category = "SIGKILL while writing: conversation file"
    path = tmp_path / "chat.json"
    schedule = kill_schedule("conversation", cases(full=15, quick=3), 0.0, 0.3)
    landed = 0
    for after in schedule:
        tally.start(category, key=round(after, 3))
        committed = run_and_kill("conversation", tmp_path, after)
        cut = bool(temp_files(tmp_path))  # the kill landed inside a save
        landed += cut
        loaded = Conversation.load(path)  # never corrupt: the old file or the new one
        assert len(loaded.entries) >= int(committed[-1])
        assert len(loaded.entries) <= int(committed[-1]) + 1
        # A save cut by the kill may leave its temporary file; the next save (as a restarted
        # process would make) sweeps it, and leaves none of its own.
        loaded.save(path)
        assert temp_files(tmp_path) == []
        assert Conversation.load(path).items == loaded.items
        tally.hold(category, landed=cut)
    require_landed(category, landed, len(schedule))


def kv_residue(directory: Path, manifest: dict[str, Any]) -> list[str]:
    """Files a kill left behind: temporary files, and state files the manifest does not name."""
    return sorted(
        p.name for p in directory.iterdir() if p.name not in ("crash.json", manifest["file"])
    )


async def test_kv_session_survives_sigkill(tmp_path: Path, tally: Tally) -> None:
    category = "SIGKILL while writing: KV-cache session"
    schedule = kill_schedule("kv", cases(full=8, quick=2), 0.0, 1.5)
    landed = 0
    for after in schedule:
        tally.start(category, key=round(after, 3))
        committed = await trio.to_thread.run_sync(run_and_kill, "kv", tmp_path, after)
        manifest = json.loads((tmp_path / "crash.json").read_text())
        last = max(int(c) for c in committed)
        assert manifest["generation"] in (last, last + 1)
        # Landed in the window: a turn's state was being written (residue), or committed but
        # not yet reported.
        cut = bool(kv_residue(tmp_path, manifest)) or manifest["generation"] == last + 1
        landed += cut
        blob = (tmp_path / manifest["file"]).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == manifest["sha256"]
        # A restarted provider sweeps the residue and loads the committed state.
        async with LlamaCppProvider(n_ctx=2048, cache_dir=tmp_path) as provider:
            assert kv_residue(tmp_path, manifest) == []

            async def ask(session: Session) -> str:
                return (
                    await session.generate_text(
                        prompt="Hi", max_tokens=2, temperature=0, cache_key="crash"
                    )
                ).text

            result = await provider.simple_execution(ask).result()
        details = result.summary.llm_calls[0].details
        assert result.succeeded, result
        assert details.get("kv_loaded_generation") == manifest["generation"], details
        assert "kv_note" not in details, details
        tally.hold(category, landed=cut)
        for leftover in tmp_path.iterdir():
            leftover.unlink()  # the next round starts a fresh session
    require_landed(category, landed, len(schedule))
