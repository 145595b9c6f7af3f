"""Structured logs: per-execution context, and no secrets or prompt text anywhere."""

from __future__ import annotations

import json
from typing import Any

import trio
from structlog.testing import capture_logs

import agtl
from agtl import Session
from agtl.testing import Reply, ScriptedProvider

SECRET = "sk-test-DO-NOT-LEAK-4242"


class KeyedProvider(ScriptedProvider):
    """Holds a credential the way real remote providers do."""

    name = "keyed"

    def __init__(self, *replies: Reply | str, api_key: str) -> None:
        super().__init__(*replies)
        self._api_key = api_key


async def test_logs_summaries_and_reprs_hold_no_secrets(autojump_clock: Any) -> None:
    provider = KeyedProvider(
        Reply("fine"),
        Reply("slow " * 10, delay=1),
        Reply(error=agtl.ProviderError("upstream said no", status_code=401)),
        api_key=SECRET,
    )
    prompt = f"my password is {SECRET}"

    async def ok(session: Session) -> str:
        session.on_done(lambda r: (_ for _ in ()).throw(RuntimeError("hook failed")))
        return (await session.generate_text(prompt=prompt, system=f"key {SECRET}")).text

    async def slow(session: Session) -> str:
        return (await session.generate_text(messages=[{"role": "user", "content": prompt}])).text

    results = []
    with capture_logs() as logs:
        results.append(await provider.simple_execution(ok).result())
        results.append(await provider.simple_execution(slow, timeout=2).result())
        results.append(await provider.simple_execution(ok).result())
        with trio.move_on_after(0.5):
            await provider.simple_execution(slow).result()

    assert [r.status.value for r in results] == ["succeeded", "canceled", "failed"]
    everything = json.dumps(logs, default=repr)
    everything += repr(provider) + repr(provider.with_default_model("m"))
    for result in results:
        everything += json.dumps(result.summary.to_dict()) + result.summary.format() + repr(result)
    assert SECRET not in everything
    assert "my password" not in everything

    finished = [e for e in logs if e["event"] == "execution.finished"]
    assert len(finished) == 4
    assert {e["provider"] for e in finished} == {"keyed"}
    assert len({e["execution_id"] for e in finished}) == 4
    assert {e["status"] for e in finished} == {"succeeded", "canceled", "failed"}
    assert all(e["log_level"] == "debug" for e in finished)
    hook_failures = [e for e in logs if e["event"] == "execution.hook_failed"]
    assert hook_failures
    assert all(e["log_level"] == "warning" for e in hook_failures)


async def test_with_logger_binds_execution_context() -> None:
    import structlog

    base = structlog.get_logger("custom").bind(app="demo")

    async def fn(session: Session) -> None:
        return None

    with capture_logs() as logs:
        execution = ScriptedProvider().with_logger(base).simple_execution(fn)
        await execution.result()
    assert logs
    assert all(e["app"] == "demo" for e in logs)
    assert all(e["execution_id"] == execution.execution_id for e in logs)


class _CountingLogger:
    """A logger with a fixed level (as structlog's filtering loggers have) that counts binds."""

    def __init__(self, level: int, lines: list[dict[str, Any]], binds: list[int]) -> None:
        self.level, self.lines, self.binds = level, lines, binds
        self.context: dict[str, Any] = {}

    def is_enabled_for(self, level: int) -> bool:
        return level >= self.level

    def bind(self, **context: Any) -> _CountingLogger:
        self.binds.append(1)
        bound = _CountingLogger(self.level, self.lines, self.binds)
        bound.context = {**self.context, **context}
        return bound

    def _emit(self, level: str, event: str, **fields: Any) -> None:
        self.lines.append({"level": level, "event": event, **self.context, **fields})

    def debug(self, event: str, **fields: Any) -> None:
        if self.is_enabled_for(10):
            self._emit("debug", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, **fields)


async def test_a_logger_above_debug_is_never_bound_for_debug_lines() -> None:
    """Binding the execution's context is paid only for a line that can be emitted."""
    lines: list[dict[str, Any]] = []
    binds: list[int] = []

    async def fn(session: Session) -> str:
        return (await session.generate_text(prompt="hi")).text

    quiet = ScriptedProvider(Reply("ok")).with_logger(_CountingLogger(30, lines, binds))  # type: ignore[arg-type]
    assert (await quiet.simple_execution(fn).result()).value == "ok"
    assert binds == []
    assert lines == []

    async def hook_fails(session: Session) -> None:
        session.on_done(lambda result: 1 / 0)

    execution = quiet.simple_execution(hook_fails)
    await execution.result()
    assert len(binds) == 1  # bound once, for the warning, with the execution's context
    [line] = lines
    assert line["event"] == "execution.hook_failed"
    assert line["execution_id"] == execution.execution_id
    assert line["provider"] == "scripted"

    lines.clear()
    binds.clear()
    chatty = ScriptedProvider(Reply("ok")).with_logger(_CountingLogger(10, lines, binds))  # type: ignore[arg-type]
    answered = chatty.simple_execution(fn)
    await answered.result()
    assert len(binds) == 1  # once per execution however many lines it logs
    events = [line["event"] for line in lines]
    assert events == ["execution.started", "llm_call.finished", "execution.finished"]
    assert all(line["execution_id"] == answered.execution_id for line in lines)
