"""Cancel at random points on the real backends: the bundled model in-process, and a real
OpenAI-compatible server (llama.cpp's) on 127.0.0.1.

Cases cycle through a grid of mechanisms (handle, signal, timeout, enclosing scope, usage
limit) x points (before the start, while queued behind another execution holding the model
or the server's single slot, during prefill, mid-stream, between two calls, inside the
on_done hook, after the terminal event), with random details inside each cell. Each runs one
execution on one of the two hosts, asserts that the cancel landed in the phase the cell names
(nothing produced before a prefill or queued cancel, the model still busy for a queued one,
the stream under way for a mid-stream one), with evidence from the backend itself (a request
body sent to the server, a prompt the local worker began to process after any KV load; see
``Runner``), counted per cell as "landed", and checks the invariants of the scripted fuzz
that do not depend on exact timing, plus: the model still gives its known answer right after
the cancel; on the
local model with a KV session on disk, the committed generation is the old or the new one,
never anything else, and a canceled turn never commits; no agtl worker thread and no socket
outlives its provider. Cases are drawn from a seeded ``random.Random``; a failure prints the
seed and the case.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx2
import pytest
import trio
import trio.testing

import agtl
from agtl import CancelSignal, Event, Session, StopReason, UsageLimits
from agtl.result import CancelSource, Status
from agtl_llamacpp import LlamaCppProvider
from agtl_openai import OpenAIProvider
from agtl_openai.testing import serve_local_model
from tests.reliability.conftest import (
    Tally,
    cases,
    non_socket_fds,
    open_sockets,
    pool_state,
)
from tests.waiting import wait_until

SYSTEM = "You are a helpful assistant."
ESSAY = "Write a long, detailed essay about the history of the sea and ships."
CHECK = "What is the capital of France?"
POINTS = (
    "before_begin",
    "queued",
    "prefill",
    "mid_stream",
    "between_calls",
    "in_hook",
    "after_terminal",
)
POINT_NAMES = {
    "before_begin": "before the start",
    "queued": "while queued",
    "prefill": "in prefill",
    "mid_stream": "mid-stream",
    "between_calls": "between calls",
    "in_hook": "inside the on_done hook",
    "after_terminal": "after the terminal event",
}
CASE_DEADLINE_SECONDS = 120
SOURCES = {
    "handle": CancelSource.HANDLE,
    "signal": CancelSource.SIGNAL,
    "timeout": CancelSource.TIMEOUT,
    "enclosing": CancelSource.ENCLOSING_SCOPE,
    "limit": CancelSource.LIMIT,
}


#: Every (mechanism, point) cell the fuzz covers; cases cycle through it in order, so a run
#: of N cases gives every cell N / len(GRID) of them, each with its own random details.
GRID: tuple[tuple[str, str], ...] = (
    *(("handle", point) for point in POINTS),
    *(("signal", point) for point in POINTS),
    ("timeout", "prefill"),
    ("timeout", "mid_stream"),
    ("enclosing", "queued"),
    ("enclosing", "prefill"),
    ("enclosing", "mid_stream"),
    ("limit", "between_calls"),
)
#: A prompt whose prefill takes long enough (about a second on the bundled model) that a
#: cancel aimed at it lands before the first token, and short enough that a server which
#: goes on prefilling after the client left (it cannot tell until it sends) is soon free.
PREFILL_PROMPT = "Rivers carry water from the mountains down to the sea, shaping valleys. " * 20


@attrs.frozen
class RealCase:
    backend: str
    host: str
    mechanism: str
    point: str
    deltas: int  # mid_stream: cancel after this many deltas
    delay: float  # queued/prefill/timeout: seconds after the point was reached
    kv: bool  # local only: the call uses a KV session on disk
    nonce: int  # makes a prefill prompt unlike any before (nothing of it is cached)

    @property
    def category(self) -> str:
        return f"{self.backend} {self.host}: {self.mechanism}, {POINT_NAMES[self.point]}"


def draw(rng: random.Random, backend: str, index: int) -> RealCase:
    """Case ``index``: the next cell of the grid, with random details from ``rng``."""
    mechanism, point = GRID[index % len(GRID)]
    return RealCase(
        backend=backend,
        host=("simple", "streaming")[(index // len(GRID) + index) % 2],
        mechanism=mechanism,
        point=point,
        deltas=rng.randint(1, 12),
        delay=rng.uniform(0.0, 0.06),
        kv=backend == "local" and rng.random() < 0.5,
        nonce=rng.randrange(2**32),
    )


def _task_tree() -> list[str]:
    """Names of every living task (for a failure message)."""
    names: list[str] = []
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        if task is None:
            continue
        names.append(task.name)
        pending.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    return names


def agtl_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("agtl-")]


class Runner:
    """Runs cases against one provider, with the check answer known in advance.

    It watches what the backend really did, to show where a cancel landed: on a server, how
    many request bodies went out on the wire (the HTTP client's trace of each request; the
    OpenAI provider sends nothing until the stream is first read); on the local model, how
    many prompts the worker began to process (after any KV session load).
    """

    def __init__(self, provider: agtl.Provider, cache_dir: Path | None) -> None:
        self.provider = provider
        self.cache_dir = cache_dir
        self.expected_answer = ""
        self.first_piece = 0.0
        self.pieces_per_second = 0.0
        self.bodies_sent = 0
        if isinstance(provider, OpenAIProvider):
            provider.client._client.event_hooks["request"].append(self._trace_request)

    async def _trace_request(self, request: httpx2.Request) -> None:
        request.extensions["trace"] = self._trace

    async def _trace(self, event: str, info: dict[str, Any]) -> None:
        if event == "http11.send_request_body.complete":
            self.bodies_sent += 1

    def prompts_started(self) -> int:
        """Request bodies sent (server), or prompts the worker began (local)."""
        if isinstance(self.provider, LlamaCppProvider):
            return self.provider._engine.prefills_started
        return self.bodies_sent

    async def prompt_started(self, before: int) -> None:
        """Return once the case's prompt is with the backend: sent, or being processed."""
        what = "the request body sent" if self.cache_dir is None else "the prefill started"
        await wait_until(lambda: self.prompts_started() > before, what)

    async def measure(self) -> None:
        """How fast this backend answers the essay prompt here: the first piece, then the
        pieces per second. Timeout cells aim at mid-reply with it, whatever the machine."""
        stamps: list[float] = []

        async def essay(session: Session) -> None:
            started = trio.current_time()
            async with session.stream_text(
                prompt=ESSAY, system=SYSTEM, max_tokens=32, temperature=0
            ) as stream:
                async for _ in stream:
                    stamps.append(trio.current_time() - started)

        (await self.provider.simple_execution(essay).result()).unwrap()
        assert len(stamps) > 8, stamps
        self.first_piece = stamps[0]
        self.pieces_per_second = (len(stamps) - 1) / (stamps[-1] - stamps[0])

    async def answer(self) -> str:
        async def ask(session: Session) -> str:
            result = await session.generate_text(
                prompt=CHECK, system=SYSTEM, max_tokens=8, temperature=0
            )
            return result.text

        return (await self.provider.simple_execution(ask).result()).unwrap()

    def waiting(self) -> bool:
        """Whether a call of this process waits for the busy local model."""
        assert isinstance(self.provider, LlamaCppProvider)
        return self.provider._engine.turn.statistics().tasks_waiting > 0

    async def queued(self, before: int) -> None:
        """Return once the case's call waits for the busy model: in the local model's queue,
        or sent to the server, whose one slot the blocker holds."""
        if isinstance(self.provider, LlamaCppProvider):
            await wait_until(self.waiting, "queueing for the model")
        else:
            await self.prompt_started(before)

    def committed(self, key: str) -> int | None:
        """The committed generation of a KV session, after checking it is whole."""
        assert self.cache_dir is not None
        path = self.cache_dir / f"{key}.json"
        if not path.exists():
            return None
        manifest = json.loads(path.read_text())
        state = self.cache_dir / manifest["file"]
        blob = state.read_bytes()
        assert len(blob) == manifest["size"]
        assert hashlib.sha256(blob).hexdigest() == manifest["sha256"]
        kv_files = {p.name for p in self.cache_dir.glob(f"{key}.*.kv")}
        assert kv_files == {manifest["file"]}, kv_files  # nothing half-written left behind
        generation = manifest["generation"]
        assert isinstance(generation, int)
        return generation

    async def run(self, case: RealCase, index: int) -> bool:
        """Run one case and check it; whether the execution was cancelled."""
        await trio.testing.wait_all_tasks_blocked()
        baseline_tasks = trio.lowlevel.current_statistics().tasks_living
        fds_before = non_socket_fds()
        key = f"fuzz-{index % 4}" if case.kv else None
        before = self.committed(key) if key else None
        deltas_seen: list[int] = []
        texts: list[str] = []
        hook_results: list[agtl.Result[Any]] = []
        registered: list[bool] = []
        first_call_done = trio.Event()
        call_started = trio.Event()
        reached = trio.Event()
        signal = CancelSignal()
        # Where the cancel really landed: the deltas of the current call when it was fired,
        # and whether the blocker still held the model (queued cases).
        landed: dict[str, Any] = {}

        started_before = self.prompts_started()

        def note_landing() -> None:
            """What the backend had done when the cancel was fired (evidence of its phase)."""
            landed.setdefault("deltas", deltas_seen[-1] if deltas_seen else None)
            landed.setdefault("calls", len(deltas_seen))
            landed.setdefault("blocker_busy", not blocker_done.is_set())
            landed.setdefault("prompt_started", self.prompts_started() > started_before)
            if isinstance(self.provider, LlamaCppProvider):
                landed.setdefault("waiting", self.waiting())

        def fire() -> None:
            note_landing()
            if case.mechanism == "signal":
                signal.cancel("fuzz")
            else:
                execution.cancel("fuzz")

        async def hook(result: agtl.Result[Any]) -> None:
            hook_results.append(result)
            if case.point == "in_hook":
                fire()

        if case.point == "prefill":
            prompt, max_tokens = f"Note {case.nonce}.\n{PREFILL_PROMPT}", 8
        elif case.point == "between_calls":
            prompt, max_tokens = CHECK, 8
        elif case.mechanism == "timeout":
            # Long enough that the timeout (from the measured speed) lands mid-stream.
            prompt, max_tokens = ESSAY, 400
        else:
            prompt, max_tokens = ESSAY, 160

        async def body(session: Session) -> str:
            session.on_done(hook)
            registered.append(True)
            parts: list[str] = []
            calls = 2 if case.point == "between_calls" else 1
            for number in range(calls):
                if number:
                    first_call_done.set()
                    await trio.sleep(0.05)
                async with session.stream_text(
                    prompt=prompt,
                    system=SYSTEM,
                    max_tokens=max_tokens,
                    temperature=0,
                    cache_key=key,
                ) as stream:
                    deltas_seen.append(0)
                    texts.append("")
                    call_started.set()
                    async for delta in stream:
                        deltas_seen[-1] += 1
                        texts[-1] += delta
                        parts.append(delta)
                        if deltas_seen[-1] == case.deltas:
                            reached.set()
            return "".join(parts)

        kwargs: dict[str, Any] = {}
        if case.mechanism == "signal":
            kwargs["signal"] = signal
        if case.mechanism == "limit":
            kwargs["limits"] = UsageLimits(max_requests=1)
        if case.host == "simple":
            execution: agtl.Execution[Any] = self.provider.simple_execution(body, **kwargs)
        else:

            async def gen(session: Session) -> AsyncIterator[Event]:
                value = await body(session)
                yield await session.done(value)

            execution = self.provider.streaming_execution(gen, **kwargs)

        # The trigger waits for its point in the call; a timeout can end the execution before
        # that point comes, and then the trigger has nothing left to do.
        trigger_scope = trio.CancelScope()

        async def trigger() -> None:
            with trigger_scope:
                await fire_at_point()

        async def fire_at_point() -> None:
            if case.point == "queued":
                await call_started.wait()
                await self.queued(started_before)  # waiting for the model from here on
                await trio.sleep(case.delay)
            elif case.point == "prefill":
                await call_started.wait()
                await self.prompt_started(started_before)  # being processed from here on
                await trio.sleep(case.delay)
            elif case.point == "mid_stream":
                await reached.wait()
            elif case.point == "between_calls":
                await first_call_done.wait()
            if case.mechanism == "timeout":
                return  # the deadline is set on the execution
            if case.mechanism in ("handle", "signal"):
                fire()
            if case.mechanism == "enclosing":
                note_landing()
                outer.cancel()

        seen: list[list[Event]] = []
        ended: list[bool] = []

        async def consume() -> None:
            events: list[Event] = []
            seen.append(events)
            async for event in execution.stream():  # type: ignore[attr-defined]
                events.append(event)
            ended.append(True)

        blocker_done = trio.Event()

        async def blocker(running: trio.Event) -> None:
            """Holds the model (the local one, or the server's single slot) meanwhile."""

            async def hold(session: Session) -> None:
                async with session.stream_text(
                    prompt=ESSAY, system=SYSTEM, max_tokens=40, temperature=0
                ) as stream:
                    async for _ in stream:
                        running.set()

            try:
                (await self.provider.simple_execution(hold).result()).unwrap()
            finally:
                blocker_done.set()

        if case.point == "before_begin":
            fire()
        escaped = False
        with trio.CancelScope() as outer:
            async with trio.open_nursery() as nursery:
                if case.point == "queued":
                    running = trio.Event()
                    nursery.start_soon(blocker, running)
                    await running.wait()  # the model is busy: the case will queue behind it
                else:
                    blocker_done.set()
                if case.point not in ("before_begin", "in_hook", "after_terminal"):
                    nursery.start_soon(trigger)
                if case.mechanism == "timeout":
                    execution = _with_timeout(self, execution, body, case)
                try:
                    async with execution:
                        if case.host == "streaming":
                            nursery.start_soon(consume)
                        await execution.result()
                except trio.Cancelled:
                    escaped = True
                    raise
                finally:
                    trigger_scope.cancel()  # consumers and the blocker must end by themselves
        assert outer.cancelled_caught == escaped, (escaped, execution.outcome)
        result = execution.outcome
        assert result is not None
        if case.point == "after_terminal":
            fire()

        # one frozen result
        assert await execution.result() is result
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            result.status = Status.FAILED  # type: ignore[misc]
        # the outcome fits the case, and the cancel landed where the case says
        calls = result.summary.llm_calls
        if case.point in ("in_hook", "after_terminal"):
            assert result.status is Status.SUCCEEDED, result
        else:
            assert result.status is Status.CANCELED, (result, result.error)
            assert result.cancel is not None
            assert result.cancel.source is SOURCES[case.mechanism], result.cancel
            _check_outcome(case, landed, deltas_seen, calls)
        if case.mechanism == "timeout":
            # The deadline fires by itself: what the backend had done by the end shows
            # whether it landed in its phase (counted, not required).
            note_landing()
        evidence = _landed(case, landed, calls)
        if case.mechanism != "timeout":
            # Fired by hand once its phase was reached: it must have landed there.
            assert evidence, ("the cancel did not land where the case says", case, landed)
        assert escaped == (result.status is Status.CANCELED and case.mechanism == "enclosing")
        # usage never below what was delivered
        assert len(calls) == len(deltas_seen)
        for call, deltas in zip(calls, deltas_seen, strict=True):
            assert (call.usage.output_tokens or 0) >= deltas
        if result.status is Status.SUCCEEDED:
            assert result.value == "".join(texts)
        elif calls and calls[-1].stop_reason is StopReason.CANCELLED:
            assert result.partial is not None
            assert result.partial.text == texts[-1]  # nothing delivered is lost
        assert hook_results == ([result] if registered else [])
        for events in seen:
            assert tuple(events) == result.events
        if not escaped:
            assert len(ended) == len(seen), "a stream consumer did not end by itself"
        # KV session on disk: one new generation per call that finished, none for a call
        # that was stopped (a canceled turn never commits)
        if key is not None:
            finished = sum(1 for c in calls if c.stop_reason not in (None, StopReason.CANCELLED))
            after = self.committed(key)
            assert after == ((before or 0) + finished if finished else before), calls
        # nothing left running; the model still answers as before
        # The OpenAI SDK drops an async generator when a stream ends; trio closes it in a
        # system task of its own. Let such finalizers run before counting tasks.
        await trio.testing.wait_all_tasks_blocked()
        assert trio.lowlevel.current_statistics().tasks_living == baseline_tasks, _task_tree()
        assert agtl_threads() == []
        assert non_socket_fds() == fds_before  # no file, pipe or eventfd left open
        if isinstance(self.provider, OpenAIProvider):
            assert pool_state(self.provider).in_use == 0  # every connection back or closed
        assert await self.answer() == self.expected_answer
        return evidence


def _landed(case: RealCase, landed: dict[str, Any], calls: Any) -> bool:
    """Whether there is evidence that the cancel of ``case`` landed in the phase it names.

    Queued: the blocker still held the model and the call was waiting for it (local: in the
    model's queue; server: its request body was sent). Prefill: the prompt was with the
    backend (local: the worker had begun on it, after any KV load; server: the body was sent)
    and no token had come. Mid-stream: the stream had started and the call was the one cut.
    Between calls: the first call had ended by itself and the second never started. The
    other points (before the start, in the hook, after the terminal event) need no backend.
    """
    if case.point == "queued":
        waiting = landed.get("waiting", landed["prompt_started"])
        return bool(landed["blocker_busy"] and waiting and not landed["deltas"])
    if case.point == "prefill":
        if not calls:
            return False  # a timeout that came before the call
        started = landed["prompt_started"]
        if case.backend == "local" and calls:
            started = started and bool(calls[-1].details.get("prefill_started"))
        return bool(started and not landed["deltas"]) and calls[-1].usage.output_tokens in (0, None)
    if case.point == "mid_stream":
        return bool(landed["deltas"]) and calls[-1].stop_reason is StopReason.CANCELLED
    if case.point == "between_calls":
        return len(calls) == 1 and calls[0].stop_reason is not StopReason.CANCELLED
    return True


def _check_outcome(
    case: RealCase, landed: dict[str, Any], deltas_seen: list[int], calls: Any
) -> None:
    """Assert that the outcome of ``case`` fits the phase it names."""
    if case.point == "before_begin":
        assert calls == (), calls  # the workflow never ran; no model was touched
    elif case.point == "queued":
        assert landed["blocker_busy"], "the model was free again before the cancel"
        assert sum(deltas_seen) == 0, deltas_seen  # the queued call produced nothing
    elif case.point == "prefill":
        assert deltas_seen, "no call was made"
        assert deltas_seen[-1] == 0, ("a token came first", deltas_seen)
        assert calls[-1].usage.output_tokens in (0, None), calls[-1].usage
    elif case.point == "mid_stream":
        assert deltas_seen, "no call was made"
        at_least = 1 if case.mechanism == "timeout" else case.deltas
        fired_at = deltas_seen[-1] if case.mechanism == "timeout" else landed["deltas"]
        assert fired_at >= at_least, ("the cancel came before the stream", deltas_seen)
        assert calls[-1].stop_reason is StopReason.CANCELLED, calls[-1]
    elif case.point == "between_calls":
        assert len(calls) == 1, calls  # the second call never started
        assert calls[0].stop_reason is not StopReason.CANCELLED, calls[0]


def _with_timeout(
    runner: Runner, execution: agtl.Execution[Any], body: Any, case: RealCase
) -> agtl.Execution[Any]:
    """The same workflow with ``timeout=``: long enough to reach the call, short of its end."""
    provider = runner.provider
    if case.point == "prefill":
        # Fires long before the first token of a prompt that takes about a second (whether
        # the prompt had reached the backend is counted as its evidence).
        timeout = 0.02 + case.delay
    else:
        # Mid-stream, from this machine's measured speed: twice the wait for the first piece
        # (a loaded machine), then about 30 pieces, far short of the reply's 400 tokens.
        timeout = 2 * runner.first_piece + 30 / runner.pieces_per_second + case.delay
    if case.host == "simple":
        return provider.simple_execution(body, timeout=timeout)

    async def gen(session: Session) -> AsyncIterator[Event]:
        value = await body(session)
        yield await session.done(value)

    return provider.streaming_execution(gen, timeout=timeout)


async def fuzz(runner: Runner, backend: str, count: int, tally: Tally) -> None:
    seed = int(os.environ.get("AGTL_FUZZ_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    runner.expected_answer = await runner.answer()
    assert "Paris" in runner.expected_answer
    await runner.measure()
    print(
        f"{backend}: seed={seed}; first piece {runner.first_piece * 1000:.0f} ms, "
        f"{runner.pieces_per_second:.0f} pieces/s"
    )
    for index in range(count):
        case = draw(rng, backend, index)
        tally.start(case.category, key=case)
        try:
            # A hang is a failure of this case, reported with its seed, never a stuck suite.
            with trio.fail_after(CASE_DEADLINE_SECONDS):
                cancelled = await runner.run(case, index)
        except BaseException as exc:
            exc.add_note(f"seed={seed} case #{index}: {case}")
            raise
        tally.hold(case.category, landed=cancelled)


@pytest.fixture
def server_url() -> Iterator[str]:
    # A request queues for the server's single slot instead of interrupting the reply in it.
    with serve_local_model(interrupt_requests=False) as url:
        yield url


async def test_random_cancels_on_the_local_model(tmp_path: Path, tally: Tally) -> None:
    threads_before = agtl_threads()
    async with LlamaCppProvider(n_ctx=2048, cache_dir=tmp_path) as provider:
        await fuzz(Runner(provider, tmp_path), "local", cases(full=200, quick=40), tally)
    assert agtl_threads() == threads_before == []


async def test_random_cancels_on_a_real_server(server_url: str, tally: Tally) -> None:
    sockets_before = open_sockets()
    provider = OpenAIProvider(base_url=server_url).with_default_model("smollm2")
    provider = provider.with_pricing({"smollm2": agtl.Price.free()})
    async with provider:
        await fuzz(Runner(provider, None), "server", cases(full=100, quick=20), tally)
    assert open_sockets() == sockets_before
