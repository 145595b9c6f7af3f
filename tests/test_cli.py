"""The `agtl` command, run as a user runs it: subprocesses, real output, a real Ctrl-C."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import trio

from agtl import Price, Session
from agtl.cli._serve import _token
from agtl.reporting import JsonlSink, aggregate
from agtl.testing import ScriptedProvider
from tests.local import bundled_model_speed, rendered_dom

ROOT = Path(__file__).resolve().parent.parent
AGTL = [sys.executable, "-m", "agtl.cli"]


def agtl(
    *args: str, stdin: str | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AGTL, *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_help_lists_commands_with_examples() -> None:
    done = agtl("--help")
    assert done.returncode == 0
    for command in ("demo", "chat", "run", "report", "serve", "worker"):
        assert command in done.stdout
    assert "examples:" in done.stdout
    for command in ("demo", "chat", "run", "report", "serve", "worker"):
        sub = agtl(command, "--help")
        assert sub.returncode == 0
        assert "example" in sub.stdout


def test_demo_shows_streaming_a_timeout_a_race_and_the_summaries() -> None:
    done = agtl("demo")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "The capital of France is Paris." in out
    kept = re.search(r"canceled by timeout \(timeout=[\d.]+s\); kept (\d+) characters", out)
    assert kept is not None, out
    assert int(kept.group(1)) > 0  # the timeout landed mid-reply, whatever the machine's speed
    assert "tool get_weather({'city':" in out
    assert "(ok," in out
    assert " won " in out
    assert "canceled" in out.split("4. Racing")[1]
    assert "What each execution did" in out
    assert "counted" in out  # token provenance is shown
    assert done.stderr == ""


def test_run_prints_events_and_exits_by_outcome(tmp_path: Path) -> None:
    flow = tmp_path / "flow.py"
    flow.write_text(
        "import trio\n"
        "async def ok(session):\n"
        "    r = await session.generate_text(prompt='What is the capital of France?',\n"
        "        system='You are a helpful assistant.', temperature=0)\n"
        "    return r.text\n"
        "async def streamed(session):\n"
        "    yield session.emit('status', 'starting')\n"
        "    async with session.stream_text(prompt='Say hi', temperature=0, max_tokens=8) as s:\n"
        "        async for d in s:\n"
        "            yield session.emit('chunk', d)\n"
        "    yield await session.done(s.text)\n"
        "async def slow(session):\n"
        "    await trio.sleep(30)\n"
        "async def broken(session):\n"
        "    raise ValueError('bad workflow')\n"
    )
    sink = tmp_path / "runs.jsonl"
    ok = agtl("run", f"{flow}:ok", "--json", "--log-summaries", str(sink))
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["status"] == "succeeded"
    assert data["value"] == "The capital of France is Paris."
    assert data["summary"]["llm_calls"][0]["usage"]["provenance"] == "counted"

    streamed = agtl("run", f"{flow}:streamed", "--log-summaries", str(sink))
    assert streamed.returncode == 0, streamed.stderr
    assert "status: 'starting'" in streamed.stdout

    slow = agtl("run", f"{flow}:slow", "--timeout", "0.5", "--log-summaries", str(sink))
    assert slow.returncode == 3
    assert "canceled (timeout)" in slow.stdout

    broken = agtl("run", f"{flow}:broken", "--log-summaries", str(sink))
    assert broken.returncode == 4
    assert "ValueError: bad workflow" in broken.stdout

    lines = sink.read_text().splitlines()
    assert [json.loads(line)["status"] for line in lines] == [
        "succeeded",
        "succeeded",
        "canceled",
        "failed",
    ]


def test_run_shows_tracebacks_with_v_and_the_kept_text_in_json(tmp_path: Path) -> None:
    flow = tmp_path / "flow.py"
    flow.write_text(
        "async def broken(session):\n"
        "    raise ValueError('bad workflow')\n"
        "async def essay(session):\n"
        "    async with session.stream_text(prompt='Write a long essay about the sea.',\n"
        "            max_tokens=2000) as s:\n"
        "        async for d in s:\n"
        "            yield session.emit('chunk', d)\n"
        "    yield await session.done(s.text)\n"
    )
    quiet = agtl("run", f"{flow}:broken")
    assert quiet.returncode == 4
    assert "Traceback" not in quiet.stderr
    assert "run with -v for the traceback" in quiet.stdout
    loud = agtl("-v", "run", f"{flow}:broken")
    assert loud.returncode == 4
    assert "Traceback" in loud.stderr
    assert f'File "{flow}", line 2, in broken' in loud.stderr
    # A timeout that lands about 40 tokens into the reply on this machine, whatever its speed
    # (the reply could run to 2,000).
    cut = bundled_model_speed().cut_after(40)
    stopped = agtl("run", f"{flow}:essay", "--timeout", f"{cut:.3f}", "--json")
    assert stopped.returncode == 3, stopped.stderr
    data = json.loads(stopped.stdout)
    assert data["cancel"]["source"] == "timeout"
    assert len(data["partial_text"]) > 10  # the stopped text is in the JSON


def test_ctrl_c_in_run_cancels_and_still_reports(tmp_path: Path) -> None:
    flow = tmp_path / "flow.py"
    flow.write_text(
        "import trio\n"
        "async def waits(session):\n"
        "    print('waiting', flush=True)\n"
        "    await trio.sleep(60)\n"
    )
    process = subprocess.Popen(
        [*AGTL, "run", f"{flow}:waits"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "waiting"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 3, err
    assert "canceled by signal (interrupted (Ctrl-C))" in out
    assert "What each execution did" in out  # the summary table
    assert "Traceback" not in err


def test_piped_chat_exits_non_zero_after_a_failed_turn() -> None:
    done = agtl(
        "chat",
        "--base-url",
        "http://127.0.0.1:9/v1",  # nothing listens on port 9 (discard)
        "--model",
        "house-model",
        stdin="hello\n",
    )
    assert done.returncode == 4
    assert "connection to http://127.0.0.1:9/v1 failed" in done.stdout
    # An unpriced model is said once, up front, not in the middle of a reply.
    assert "note: no price known for openai/house-model" in done.stderr
    assert "pricing.unknown_model" not in done.stderr


def test_run_on_an_example() -> None:
    done = agtl("run", "examples/quickstart.py:answer", "--json", "--temperature", "0")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["status"] == "succeeded"
    assert data["value"] == "The capital of France is Paris."


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "nowhere.py:fn"], "no such file"),
        (["run", "examples/quickstart.py"], "expected FILE.py:FUNCTION"),
        (["run", "examples/quickstart.py:nothing"], "has no 'nothing'"),
        (
            ["run", "examples/quickstart.py:answer", "--base-url", "http://127.0.0.1:9/v1"],
            "needs --model",
        ),
        (["report", "absent.jsonl"], "no such summary file"),
        (["report", "README.md", "--html", "missing/dir/r.html"], "no such directory missing/dir"),
        (
            ["run", "examples/quickstart.py:answer", "--log-summaries", "missing/runs.jsonl"],
            "no such directory missing",
        ),
        (["worker", "--address", "127.0.0.1:9"], "cannot reach Temporal at 127.0.0.1:9"),
        (["worker", "--path", "missing/flows"], "--path missing/flows: no such directory"),
        (["worker", "--concurrency", "0"], "--concurrency must be at least 1"),
        (["worker", "--heartbeat-every", "0"], "--heartbeat-every must be a positive number"),
        (["worker", "--heartbeat-every", "nan"], "--heartbeat-every must be a positive number"),
        (["worker", "--profile", "nope"], "Profile 'nope' not found"),
        (["worker", "--drain", "-1"], "--drain must be a number of seconds >= 0"),
        (["report", "--temporal", "--profile", "nope"], "Profile 'nope' not found"),
        (["report"], "give a summary file or --temporal"),
        (["report", "--temporal", "127.0.0.1:9"], "cannot reach Temporal at 127.0.0.1:9"),
    ],
)
def test_user_mistakes_are_one_line_with_a_hint(args: list[str], message: str) -> None:
    done = agtl(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_report_aggregates_a_sink_written_by_real_executions(tmp_path: Path) -> None:
    sink = tmp_path / "runs.jsonl"
    for _ in range(2):
        # Greedy: sampled, the 135M model can ramble until its 4,096-token context is full.
        ran = agtl(
            "run",
            "examples/quickstart.py:answer",
            "--temperature",
            "0",
            "--log-summaries",
            str(sink),
        )
        assert ran.returncode == 0, ran.stderr
    with sink.open("a") as handle:
        handle.write('{"torn line')  # a write cut short by a crash
    done = agtl("report", str(sink))
    assert done.returncode == 0, done.stderr
    assert "llamacpp/SmolLM2-135M-Instruct.Q4_1" in done.stdout
    assert "2 executions" in done.stdout
    assert "1 unreadable line(s) skipped" in done.stdout


def test_chat_with_piped_input(tmp_path: Path) -> None:
    saved = tmp_path / "chat.json"
    done = agtl("chat", stdin=f"What is the capital of France?\n/save {saved}\n/summary\n")
    assert done.returncode == 0, done.stderr
    assert "The capital of France is Paris." in done.stdout
    assert "What each execution did" in done.stdout
    kinds = [item["role"] for item in json.loads(saved.read_text())["items"]]
    assert kinds == ["system", "user", "assistant"]


class _Terminal:
    """The chat in a pseudo-terminal, so Ctrl-C is a real SIGINT from the terminal driver."""

    def __init__(self) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: becomes `agtl chat` on the pty
            os.chdir(ROOT)
            os.execv(sys.executable, [*AGTL, "chat"])
        self.pid, self.fd, self.output = pid, fd, ""

    def expect(self, text: str, timeout: float = 60) -> str:
        """Read until ``text`` appears (a condition with a deadline, not a guessed delay)."""
        deadline = time.monotonic() + timeout
        while text not in self.output:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"did not see {text!r}; output so far:\n{self.output}")
            if not self._drain(remaining):
                break
        return self.output

    def _drain(self, timeout: float) -> bool:
        """Read what the terminal has within ``timeout``; False once the child closed it."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            try:
                self.output += os.read(self.fd, 4096).decode("utf-8", "replace")
            except OSError:
                return False
        return True

    def send(self, data: str) -> None:
        os.write(self.fd, data.encode())

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            self._drain(0.2)
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError("the chat did not exit")


def test_chat_ctrl_c_stops_the_reply_then_exits_at_the_prompt() -> None:
    term = _Terminal()
    term.expect("you>")
    term.send("Write a long essay about the sea.\n")
    term.expect("model>")
    term.expect("The sea")  # the reply is streaming
    term.send("\x03")  # Ctrl-C mid-reply
    term.expect("stopped")
    term.expect("you>")
    term.send("What is the capital of France?\n")
    term.expect("Paris")
    term.expect("you>")
    term.send("/summary\n")
    term.expect("What each execution did")
    out = term.expect("└")  # the whole table
    assert "cancel" in out.split("What each execution did")[1]
    term.expect("you>")
    term.send("\x03")  # Ctrl-C at the prompt
    assert term.wait() == 0


def test_html_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    sink = tmp_path / "runs.jsonl"
    ok = agtl(
        "run", "examples/quickstart.py:answer", "--temperature", "0", "--log-summaries", str(sink)
    )
    assert ok.returncode == 0, ok.stderr
    flow = tmp_path / "essay.py"
    flow.write_text(
        "async def essay(session):\n"
        "    async with session.stream_text(prompt='Write a long essay about the sea.',\n"
        "            system='You are a helpful assistant.', max_tokens=2000) as s:\n"
        "        async for d in s:\n"
        "            yield session.emit('chunk', d)\n"
        "    yield await session.done(s.text)\n"
    )
    cut = bundled_model_speed().cut_after(30)  # mid-reply on this machine, whatever its speed
    stopped = agtl("run", f"{flow}:essay", "--timeout", f"{cut:.3f}", "--log-summaries", str(sink))
    assert stopped.returncode == 3, stopped.stderr
    page = tmp_path / "report.html"
    done = agtl("report", str(sink), "--html", str(page))
    assert done.returncode == 0, done.stderr
    text = page.read_text()
    assert "<script" not in text  # nothing to load or run: works offline
    assert len(text) < 100_000

    dom = rendered_dom(page, tmp_path / "profile")
    assert 'id="timeline"' in dom
    # rows name the workflow, how it ended and the model
    assert "#1 answer succeeded  llamacpp/SmolLM2-135M-Instruct.Q4_1" in dom
    assert "#2 essay canceled (timeout)  llamacpp/SmolLM2-135M-Instruct.Q4_1" in dom
    assert "cancel point: timeout" in dom
    assert dom.count("<rect") >= 4  # prefill and decode of each call, and the legend


def test_report_counts_costs_recorded_by_workflows(tmp_path: Path) -> None:
    sink = tmp_path / "runs.jsonl"
    provider = (
        ScriptedProvider("a b", "c d", model="m")
        .with_pricing({"m": Price(input=0, output=1000)})  # $0.001 per output token
        .with_summary_sink(JsonlSink(sink))
    )

    async def searches(session: Session) -> None:
        session.record_cost("search API", "0.002")
        await session.generate_text(prompt="q")

    async def main() -> None:
        for _ in range(2):
            await provider.simple_execution(searches)

    trio.run(main)
    [report] = aggregate(JsonlSink.read(sink)[0])
    assert report.cost == Decimal("0.004")  # two calls of two output tokens
    assert report.other_cost == Decimal("0.004")  # two searches
    assert report.total_cost == Decimal("0.008")
    done = agtl("report", str(sink))
    assert done.returncode == 0, done.stderr
    assert "other cost" in done.stdout
    assert "$0.004000" in done.stdout
    assert "$0.008000" in done.stdout


def test_serve_needs_a_token_only_beyond_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGTL_SERVE_TOKEN", raising=False)
    for loopback in ("127.0.0.1", "::1", "localhost"):
        assert _token(loopback) is None
    made = _token("0.0.0.0")
    assert made is not None
    assert len(made) >= 32
    assert _token("0.0.0.0") != made  # a new one each start
    monkeypatch.setenv("AGTL_SERVE_TOKEN", "from-the-environment-123")
    assert _token("127.0.0.1") == "from-the-environment-123"


def test_html_report_stays_small_and_says_what_happened(tmp_path: Path) -> None:
    """<= 2 KB per execution plus a bounded amount per event kind, however many events;
    tool-calling steps and tool calls drawn as such; a cancel without a reason says so."""
    import trio

    import agtl
    from agtl.cli._html import _BUCKET_PX, _PLOT_WIDTH, write_html
    from agtl.reporting import record_of
    from agtl.testing import Reply, ScriptedProvider

    @agtl.tool
    async def double(x: int) -> int:
        """Twice x."""
        return 2 * x

    async def chatty(session: agtl.Session) -> AsyncIterator[agtl.Event]:
        async with session.stream_text(prompt="go", tools=[double]) as stream:
            async for delta in stream:
                yield session.emit("chunk", delta)
                yield session.emit("progress", len(delta))
        yield await session.done(stream.result.text)

    async def main() -> list[dict[str, object]]:
        records = []
        for n in range(14):
            provider = ScriptedProvider(
                Reply("", tool_calls=[agtl.ToolCallRequest("c1", "double", {"x": n})]),
                Reply("word " * 300),
            )
            execution = provider.streaming_execution(chatty)
            if n == 13:
                execution.cancel()  # no reason given
            records.append(record_of(await execution.result()))
        return records

    records = trio.run(main)
    page = tmp_path / "report.html"
    write_html(records, page)
    text = page.read_text()
    empty = tmp_path / "empty.html"
    write_html([], empty)
    fixed = len(empty.read_text())
    kinds = 2  # chunk and progress
    per_kind = (_PLOT_WIDTH // _BUCKET_PX + 1) * 16 + 200  # ticks and their tooltip, per row
    assert len(text) - fixed <= len(records) * (2048 + kinds * per_kind)
    assert text.count("<title>") < 14 * 12  # ticks are aggregated, not one per event
    assert "asked for tools" in text
    assert "tool double: ok" in text
    assert "#1 test_html_report_stays_small_and_says_what_happened.&lt;locals&gt;.chatty" in text
    assert "cancel point: handle (no reason given)" in text
    assert "None" not in text
