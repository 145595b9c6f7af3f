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
import signal
import subprocess
import sys
import time
from pathlib import Path

import trio

from agtl import Conversation, Session
from agtl.reporting import JsonlSink
from agtl_llamacpp import LlamaCppProvider
from tests.reliability.conftest import Tally, cases

ROOT = Path(__file__).resolve().parents[2]


def run_and_kill(mode: str, directory: Path, after: float) -> list[str]:
    """Start the child, SIGKILL it ``after`` seconds into its loop; what it committed."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.crash_child", mode, str(directory)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        # The loop starts after imports (and, for kv, the model load): wait for its first write
        # with a deadline, then let it run for the drawn time before the kill.
        first = child.stdout.readline().strip()
        assert first.startswith("committed"), first
        time.sleep(after)  # the kill moment is what is random here; nothing waits on timing
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    rest = child.stdout.read().splitlines()
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    return [line.split(" ", 1)[1] for line in [first, *rest] if line.startswith("committed ")]


def test_summary_sink_survives_sigkill(tmp_path: Path, tally: Tally) -> None:
    rng = random.Random()
    for _ in range(cases(full=15, quick=3)):
        tally.start("SIGKILL while writing: summary sink (JSON lines)")
        committed = run_and_kill("sink", tmp_path, rng.uniform(0.0, 0.3))
        path = tmp_path / "summaries.jsonl"
        records, skipped = JsonlSink.read(path)
        lines = path.read_bytes().split(b"\n")
        # At most the one line being written at the kill is torn, and only at the end.
        assert skipped <= 1
        if skipped:
            assert lines[-1] != b""
            assert all(json.loads(line) for line in lines[:-1] if line)
        ids = {record["execution_id"] for record in records}
        assert set(committed) <= ids
        tally.hold("SIGKILL while writing: summary sink (JSON lines)")
        # A torn last line is repaired by whoever appends next: start the next round clean.
        if skipped:
            path.write_bytes(b"\n".join(lines[:-1]) + b"\n")


def test_saved_conversation_survives_sigkill(tmp_path: Path, tally: Tally) -> None:
    rng = random.Random()
    path = tmp_path / "chat.json"
    for _ in range(cases(full=15, quick=3)):
        tally.start("SIGKILL while writing: conversation file")
        committed = run_and_kill("conversation", tmp_path, rng.uniform(0.0, 0.3))
        loaded = Conversation.load(path)  # never corrupt: the old file or the new one
        assert len(loaded.entries) >= int(committed[-1])
        assert len(loaded.entries) <= int(committed[-1]) + 1
        tally.hold("SIGKILL while writing: conversation file")


async def test_kv_session_survives_sigkill(tmp_path: Path, tally: Tally) -> None:
    rng = random.Random()
    for _ in range(cases(full=8, quick=2)):
        tally.start("SIGKILL while writing: KV-cache session")
        committed = await trio.to_thread.run_sync(
            run_and_kill, "kv", tmp_path, rng.uniform(0.0, 1.5)
        )
        manifest = json.loads((tmp_path / "crash.json").read_text())
        last = max(int(c) for c in committed)
        assert manifest["generation"] in (last, last + 1)
        blob = (tmp_path / manifest["file"]).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == manifest["sha256"]
        # A restarted provider sweeps the residue and loads the committed state.
        async with LlamaCppProvider(n_ctx=2048, cache_dir=tmp_path) as provider:
            assert {p.name for p in tmp_path.iterdir() if not p.name.startswith(".")} == {
                "crash.json",
                manifest["file"],
            }

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
        tally.hold("SIGKILL while writing: KV-cache session")
        for leftover in tmp_path.iterdir():
            leftover.unlink()  # the next round starts a fresh session
