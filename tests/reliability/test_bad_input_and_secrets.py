"""Bad input at every public entry point, misbehaving workflows, and secrets that never leak.

Bad arguments raise an agtl InvalidArgumentError at the call, naming the argument (the core's
own table is in tests/test_bad_input.py; this adds provider constructors, structured output
schemas and prompts past the context). Secrets: everything a run with a fake key produces
(logs at every level, stdout/stderr, reprs, errors, summaries, summary sink records, the
`agtl report` output) is captured and searched for the key.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio

import agtl
from agtl import Event, Session, Status
from agtl.reporting import JsonlSink
from agtl.testing import ScriptedProvider
from agtl_llamacpp import LlamaCppProvider
from agtl_openai import OpenAIProvider
from tests.providers.hostile_server import HostileServer
from tests.reliability.conftest import Tally

scripted: Any = ScriptedProvider()
SCHEMA_CASES: list[tuple[str, Any, str]] = [
    ("format type", {"type": "xml"}, "response_format"),
    ("schema missing", {"type": "json_schema"}, "response_format.json_schema"),
    (
        "schema not a mapping",
        {"type": "json_schema", "json_schema": {"name": "a", "schema": "{}"}},
        "response_format.json_schema",
    ),
    (
        "unknown schema type",
        {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "banana"}}},
        "response_format.json_schema.schema.type",
    ),
    (
        "bad nested property",
        {
            "type": "json_schema",
            "json_schema": {
                "name": "a",
                "schema": {"type": "object", "properties": {"x": {"type": "strin"}}},
            },
        },
        "response_format.json_schema.schema.properties.x.type",
    ),
    (
        "schema not JSON",
        {"type": "json_schema", "json_schema": {"name": "a", "schema": {"default": {1, 2}}}},
        "response_format.json_schema.schema",
    ),
]
LOCAL_URL = "http://127.0.0.1:9/v1"
# Typed as Any on purpose: these pass what the type checker would refuse.
NOT_A_STR: Any = 5
NOT_A_PATH: Any = 12
CONSTRUCTOR_CASES: list[tuple[str, Callable[[], object], str]] = [
    ("base_url scheme", lambda: OpenAIProvider(api_key="k", base_url="ftp://x"), "base_url"),
    ("base_url type", lambda: OpenAIProvider(api_key="k", base_url=NOT_A_STR), "base_url"),
    ("negative timeout", lambda: OpenAIProvider(base_url=LOCAL_URL, timeout=-1), "timeout"),
    ("negative retries", lambda: OpenAIProvider(base_url=LOCAL_URL, max_retries=-1), "max_retries"),
    ("no key, official API", lambda: OpenAIProvider(api_key=None), "api_key"),
    ("tiny context", lambda: LlamaCppProvider(n_ctx=0), "n_ctx"),
    ("negative batch", lambda: LlamaCppProvider(n_batch=-1), "n_batch"),
    ("pass over batch", lambda: LlamaCppProvider(n_batch=64, n_ubatch=128), "n_ubatch"),
    ("negative disk budget", lambda: LlamaCppProvider(cache_budget_bytes=-5), "cache_budget_bytes"),
    ("model path type", lambda: LlamaCppProvider(model_path=NOT_A_PATH), "model_path"),
    ("flash_attn type", lambda: LlamaCppProvider(flash_attn=NOT_A_STR), "flash_attn"),
    ("missing model", lambda: LlamaCppProvider(model_path="/none.gguf"), "/none.gguf"),
]


@pytest.mark.parametrize(
    ("response_format", "argument"),
    [(f, a) for _, f, a in SCHEMA_CASES],
    ids=[n for n, _, _ in SCHEMA_CASES],
)
def test_invalid_structured_output_is_refused_at_the_call(
    response_format: Any, argument: str, tally: Tally
) -> None:
    tally.start("bad input: structured output schemas")
    with pytest.raises(agtl.InvalidArgumentError) as info:
        scripted.with_default_options(response_format=response_format)
    assert argument in str(info.value)
    tally.hold("bad input: structured output schemas")


@pytest.mark.parametrize(
    ("make", "argument"),
    [(m, a) for _, m, a in CONSTRUCTOR_CASES],
    ids=[n for n, _, _ in CONSTRUCTOR_CASES],
)
def test_provider_constructors_refuse_bad_arguments(
    make: Callable[[], object], argument: str, tally: Tally, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    tally.start("bad input: provider constructors")
    with pytest.raises(agtl.AgtlError) as info:
        make()
    assert argument in str(info.value)
    tally.hold("bad input: provider constructors")


async def test_a_prompt_past_the_context_fails_clearly_without_touching_the_model(
    tally: Tally,
) -> None:
    tally.start("bad input: prompt past the context")
    async with LlamaCppProvider(n_ctx=256) as provider:

        async def huge(session: Session) -> str:
            return (await session.generate_text(prompt="word " * 5000)).text

        result = await provider.simple_execution(huge).result()
        assert result.status is Status.FAILED
        assert isinstance(result.error, agtl.ContextLengthError)
        assert "256" in str(result.error)

        async def small(session: Session) -> str:
            return (await session.generate_text(prompt="Hi", max_tokens=2)).text

        assert (await provider.simple_execution(small).result()).succeeded
    tally.hold("bad input: prompt past the context")


class Exotic(BaseException):
    """A BaseException subclass that is neither a cancel nor an interpreter exit."""


async def test_misbehaving_workflows_get_the_documented_outcome(tally: Tally) -> None:
    provider = ScriptedProvider()

    async def raises_base(session: Session) -> None:
        raise Exotic("odd")

    async def swallows_cancel(session: Session) -> str:
        with contextlib.suppress(trio.Cancelled):  # and carries on as if nothing happened
            await trio.sleep_forever()
        return "kept going"

    async def never_yields(session: Session) -> AsyncIterator[Event]:
        if False:  # pragma: no cover - makes this an async generator
            yield session.emit("never")

    async def yields_after_done(session: Session) -> AsyncIterator[Event]:
        yield await session.done("first")
        yield session.emit("late")
        yield await session.done("second")

    cases: list[tuple[str, agtl.Execution[Any], Status, Any]] = [
        ("BaseException subclass", provider.simple_execution(raises_base), Status.FAILED, Exotic),
        (
            "catches Cancelled and continues",
            provider.simple_execution(swallows_cancel, timeout=0.05),
            Status.CANCELED,
            None,
        ),
        (
            "never yields",
            provider.streaming_execution(never_yields),
            Status.FAILED,
            agtl.NoTerminalEventError,
        ),
        (
            "yields after done",
            provider.streaming_execution(yields_after_done),
            Status.SUCCEEDED,
            None,
        ),
    ]
    for name, execution, status, error in cases:
        tally.start(f"misbehaving workflow: {name}")
        result = await execution.result()
        assert result.status is status, (name, result)
        if error is not None:
            assert isinstance(result.error, error), (name, result.error)
        if name == "yields after done":
            assert result.value == "first"
            assert [e.type for e in result.events] == ["complete"]
        tally.hold(f"misbehaving workflow: {name}")


SECRET = "sk-live-DO-NOT-LEAK-4f2a9c"


class _Everything(logging.Handler):
    """Keeps every stdlib log record, formatted with its arguments and any traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def stdlib_logs_at_debug() -> Iterator[_Everything]:
    """Every stdlib logger (httpx2, httpcore2, openai, ...) at DEBUG, into one handler."""
    root = logging.getLogger()
    handler = _Everything()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_a_fake_key_appears_in_nothing_a_run_produces(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], tally: Tally
) -> None:
    tally.start("secrets: everything a run produces")
    server = HostileServer()
    sink_path = tmp_path / "runs.jsonl"
    produced: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        with structlog.testing.capture_logs() as logs, stdlib_logs_at_debug() as stdlib:
            provider = OpenAIProvider(api_key=SECRET, base_url=server.base_url, max_retries=1)
            provider = provider.with_summary_sink(JsonlSink(sink_path))
            async with provider:
                for model in ("ok", "unauthorized", "server-error", "cut", "stall", "endless"):

                    async def fn(session: Session, model: str = model) -> str:
                        reply = await session.generate_text(
                            prompt="hi", model=model, stall_timeout=0.3
                        )
                        return reply.text

                    result = await provider.simple_execution(fn, timeout=1.5).result()
                    produced += [
                        repr(result),
                        str(result.summary.to_dict()),
                        result.summary.format(),
                    ]
                    if result.error is not None:
                        produced += [str(result.error), repr(result.error)]
                        produced += [str(a) for a in result.error.args]
                    produced.append(json.dumps(result.summary.to_dict(), default=str))
                produced.append(repr(provider))
        nursery.cancel_scope.cancel()
    assert server.requests["unauthorized"] == 1  # the key was sent, and echoed back by the server
    produced += [repr(entry) for entry in logs]
    produced += stdlib.lines
    # The stdlib loggers really were heard: the openai SDK's HTTP client (httpx2) logs every
    # request at INFO, its transport (httpcore2) each step of a request at DEBUG.
    assert any(line.startswith("httpx2 ") for line in stdlib.lines), stdlib.lines[:5]
    assert any(line.startswith("httpcore2.http11 DEBUG") for line in stdlib.lines)
    produced.append(sink_path.read_text())
    with trio.fail_after(120):
        report = await trio.run_process(
            [sys.executable, "-m", "agtl.cli", "report", str(sink_path)],
            capture_stdout=True,
            capture_stderr=True,
        )
    produced += [report.stdout.decode(), report.stderr.decode()]
    captured = capfd.readouterr()
    produced += [captured.out, captured.err]
    leaks = [text for text in produced if SECRET in text]
    assert leaks == []
    assert len(produced) > 30
    tally.hold("secrets: everything a run produces")
