"""Running a workflow over a dataset: a bounded number of executions at once, one JSON line
per finished case, written as it finishes, and a run that stops cleanly.

Every case (``repeat`` times) is an execution of the workflow on the provider, with the case's
``input``. At most ``concurrency`` run at once (a trio ``CapacityLimiter``). When one ends,
the scorers score it (a case that did not succeed is not scored: its status says why), and
its line goes to the results file at once, under the summary sink's rules: appended whole,
under a lock, never glued to a line torn by a crash. The run keeps only counters in memory:
the report reads the file back.

Stopping: a cancel of ``cancel`` (Ctrl-C in the command line) or the run's cost crossing
``max_cost`` starts no further case and cancels the running ones with a reason; their lines
are written like any other (canceled, with their partial text and what they cost). ``resume``
skips every case the file already holds as finished (succeeded or failed), so a run after a
kill pays only for what was not finished.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import trio

from agtl import _entry as entry
from agtl._jsonable import jsonable
from agtl.errors import InvalidArgumentError, UnserializableValueError
from agtl.evals._dataset import Case, Dataset, cases_of
from agtl.evals._scoring import Scorer, scorer
from agtl.limits import UsageLimits
from agtl.provider import Provider
from agtl.result import Result
from agtl.signals import CancelSignal, any_of
from agtl.validation import check_count, check_decimal, check_optional_seconds, type_name

__all__ = ["CaseLine", "EvalRun", "Executor", "Progress", "finished_keys", "run"]

#: The statuses a resumed run does not run again.
FINISHED = frozenset({"succeeded", "failed"})


@attrs.frozen
class Progress:
    """How far a run got: cases done by status, running, and the cost so far."""

    total: int
    skipped: int = 0
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0
    running: int = 0
    cost: Decimal = Decimal(0)

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.canceled


@attrs.frozen
class EvalRun:
    """A finished run: where its lines are, what it did, and why it stopped early (if it
    did). ``EvalReport.of_run(run)`` reads its lines back."""

    path: Path | None
    progress: Progress
    scorers: tuple[str, ...]
    stopped: str | None = None
    #: Without a file: the lines, in the order the cases finished.
    lines: tuple[dict[str, Any], ...] = ()


@attrs.frozen
class CaseLine:
    """What one line of the results file says of a case."""

    id: str
    repeat: int
    status: str


def finished_keys(path: str | os.PathLike[str]) -> set[tuple[str, int]]:
    """The (case id, repeat) a results file holds as finished (a torn line is skipped)."""
    done: set[tuple[str, int]] = set()
    file = Path(path)
    if not file.exists():
        return done
    with file.open("rb") as handle:
        for raw in handle:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict) and line.get("status") in FINISHED:
                done.add((str(line.get("id")), int(line.get("repeat", 0))))
    return done


Workflow = Callable[..., Any]
#: Runs one case somewhere else than in this process (``agtl.evals.temporal``): given the
#: case, its repeat number, the run's cancel signal and the per-case timeout, its Result.
Executor = Callable[[Case, int, CancelSignal, float | None], Awaitable[Result[Any]]]


async def run(
    dataset: Dataset | Sequence[Case],
    workflow: Workflow,
    provider: Provider,
    *,
    scorers: Sequence[Scorer | Callable[..., Any]] = (),
    concurrency: int = 8,
    repeat: int = 1,
    timeout: float | None = None,  # noqa: ASYNC109 - each case's bound, not this call's
    max_cost: Decimal | float | str | None = None,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    cancel: CancelSignal | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    executor: Executor | None = None,
) -> EvalRun:
    """Run ``workflow`` (``async def fn(session, input)``, or a generator) on every case of
    ``dataset`` (``repeat`` times) and score each with ``scorers``; see the module's
    description. Returns when every case started has ended. ``executor`` runs each case
    elsewhere (on Temporal workers: ``agtl.evals.temporal``); the scorers still run here,
    on ``provider``, and ``max_cost`` is then checked as each case ends."""
    cases = cases_of(dataset)
    entry.check(workflow, argument="workflow")
    if not isinstance(provider, Provider):
        raise InvalidArgumentError(
            "provider", f"must be an agtl Provider, not {type_name(provider)}"
        )
    named = tuple(s if isinstance(s, Scorer) else scorer(s) for s in scorers)
    if len({s.name for s in named}) != len(named):
        raise InvalidArgumentError("scorers", "two scorers have the same name")
    limit = check_count("concurrency", concurrency, minimum=1)
    repeats = check_count("repeat", repeat, minimum=1)
    seconds = check_optional_seconds("timeout", timeout)
    budget = None if max_cost is None else check_decimal("max_cost", max_cost)
    if budget is not None and budget <= 0:
        raise InvalidArgumentError("max_cost", f"must be > 0 USD, not {max_cost}")
    path = None if out is None else Path(out)
    if resume and path is None:
        raise InvalidArgumentError("resume", "needs out=, the file of the run to resume")
    if path is not None and path.exists() and not resume:
        raise InvalidArgumentError(
            "out", f"{path} exists: pass resume=True (--resume) to go on with it, or another file"
        )
    skip = finished_keys(path) if resume and path is not None else set()
    todo = [(case, r) for r in range(repeats) for case in cases if (case.id, r) not in skip]
    with contextlib.ExitStack() as closing:
        sink = None if path is None else closing.enter_context(ResultsFile(path))
        state = _Run(
            provider=provider,
            workflow=workflow,
            scorers=named,
            timeout=seconds,
            budget=budget,
            path=path,
            on_progress=on_progress,
            progress=Progress(total=len(cases) * repeats, skipped=len(cases) * repeats - len(todo)),
            sink=sink,
            executor=executor,
        )
        return await _go(state, todo, limit, cancel, named)


async def _go(
    state: _Run,
    todo: list[tuple[Case, int]],
    limit: int,
    cancel: CancelSignal | None,
    named: tuple[Scorer, ...],
) -> EvalRun:
    """Start the cases in order as slots free up; return once every started one ended."""
    state.shape = (entry.takes_input(state.workflow), entry.is_streaming(state.workflow))
    state.stop_signal = CancelSignal()
    watched = state.stop_signal if cancel is None else any_of(state.stop_signal, cancel)
    state.signal = watched
    state.report()
    limiter = trio.CapacityLimiter(limit)
    async with trio.open_nursery() as nursery:
        for case, r in todo:
            token = (case.id, r)
            await limiter.acquire_on_behalf_of(token)  # a free slot first: no task per case
            if watched.cancelled:
                limiter.release_on_behalf_of(token)
                break
            nursery.start_soon(state.one, case, r, limiter)
    stopped = watched.reason if watched.cancelled else None
    return EvalRun(
        state.path, state.progress, tuple(s.name for s in named), stopped, tuple(state.kept)
    )


class ResultsFile:
    """The results file while a run appends to it: opened once, locked for the run (a second
    run on the same file is refused, not interleaved), each line written whole. A file that
    does not end in a newline (a line torn by a kill) gets one first, so the torn line stays
    alone and is skipped when read."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd = -1

    def __enter__(self) -> ResultsFile:
        fd = os.open(self._path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InvalidArgumentError(
                "out", f"{self._path} is being written by another run"
            ) from None
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            os.write(fd, b"\n")
        self._fd = fd
        return self

    def write(self, text: str) -> None:
        view = memoryview((text + "\n").encode("utf-8"))
        while view:
            view = view[os.write(self._fd, view) :]

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)  # closing releases the lock


@attrs.define
class _Run:
    """One run's shared state: what every case task reads and the counters it updates."""

    provider: Provider
    workflow: Workflow
    scorers: tuple[Scorer, ...]
    timeout: float | None
    budget: Decimal | None
    path: Path | None
    on_progress: Callable[[Progress], None] | None
    progress: Progress
    #: The results file, open for appending while the run goes (``None``: lines kept).
    sink: ResultsFile | None
    executor: Executor | None
    #: Whether the workflow takes the input, and streams (read once for every case).
    shape: tuple[bool, bool] = attrs.field(init=False)
    stop_signal: CancelSignal = attrs.field(init=False)
    signal: CancelSignal = attrs.field(init=False)
    kept: list[dict[str, Any]] = attrs.Factory(list)

    def report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress)

    async def one(self, case: Case, repeat: int, limiter: trio.CapacityLimiter) -> None:
        """Run, score and write one case, then free its slot."""
        try:
            self.progress = attrs.evolve(self.progress, running=self.progress.running + 1)
            self.report()
            line, cost = await self._line(case, repeat)
            if self.sink is not None:
                self.sink.write(json.dumps(line, ensure_ascii=False))
            else:
                self.kept.append(line)
            self._count(line["status"], cost)
        finally:
            limiter.release_on_behalf_of((case.id, repeat))

    async def _line(self, case: Case, repeat: int) -> tuple[dict[str, Any], Decimal]:
        started = time.perf_counter()
        if self.executor is not None:
            result = await self.executor(case, repeat, self.signal, self.timeout)
        else:
            result = await self._here(case)
        wall = time.perf_counter() - started
        scores: dict[str, Any] = {}
        judge_cost: Decimal | None = Decimal(0)
        if result.succeeded:
            for each in self.scorers:
                judged = await each(case, result.value, result, self.provider)
                scores[each.name] = judged.score.to_dict()
                judge_cost = (
                    None if judge_cost is None or judged.cost is None else judge_cost + judged.cost
                )
        cost = result.summary.total_cost
        spent = (cost or Decimal(0)) + (judge_cost or Decimal(0))
        return _case_line(case, repeat, result, scores, judge_cost, wall), spent

    async def _here(self, case: Case) -> Result[Any]:
        """The case as an execution of this process."""
        limits = None
        if self.budget is not None:  # one case may not spend more than what is left
            left = self.budget - self.progress.cost
            limits = UsageLimits(max_cost=max(left, Decimal("0.000001")))
        bound = entry.bind(self.workflow, case.input, shape=self.shape)
        if self.shape[1]:
            execution: Any = self.provider.streaming_execution(
                bound, signal=self.signal, timeout=self.timeout, limits=limits
            )
        else:
            execution = self.provider.simple_execution(
                bound, signal=self.signal, timeout=self.timeout, limits=limits
            )
        result: Result[Any] = await execution.result()
        return result

    def _count(self, status: str, cost: Decimal) -> None:
        progress = self.progress
        counts = {
            "succeeded": progress.succeeded,
            "failed": progress.failed,
            "canceled": progress.canceled,
        }
        counts[status] += 1
        self.progress = attrs.evolve(
            progress, running=progress.running - 1, cost=progress.cost + cost, **counts
        )
        self.report()
        if self.budget is not None and self.progress.cost >= self.budget:
            self.stop_signal.cancel(
                f"the run's cost reached its max_cost of {self.budget} USD "
                f"({self.progress.cost} USD spent)"
            )


def _case_line(
    case: Case,
    repeat: int,
    result: Result[Any],
    scores: dict[str, Any],
    judge_cost: Decimal | None,
    wall: float,
) -> dict[str, Any]:
    """One case's line: who it is, how it went, its scores, and the whole Result."""
    summary = result.summary
    usage = summary.total_usage
    return {
        "id": case.id,
        "repeat": repeat,
        "status": result.status.value,
        "input": jsonable(case.input),
        "expected": jsonable(case.expected),
        "metadata": jsonable(dict(case.metadata)),
        "output": jsonable(result.value),
        "scores": scores,
        "cost": None if summary.total_cost is None else str(summary.total_cost),
        "judge_cost": None if judge_cost is None else str(judge_cost),
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "duration": summary.duration,
        "wall": wall,
        "ttft": summary.time_to_first_token,
        "llm_calls": summary.llm_call_count,
        "tool_calls": len(summary.tool_calls),
        "cancel_reason": None if result.cancel is None else result.cancel.reason,
        "error": None if result.error is None else f"{type(result.error).__name__}: {result.error}",
        "partial": None if result.partial is None else result.partial.text,
        "result": _record(result),
    }


def _record(result: Result[Any]) -> dict[str, Any]:
    """The Result's JSON form; a value with none is written as what it is (the rest stays)."""
    try:
        return result.to_dict()
    except UnserializableValueError as exc:
        return attrs.evolve(result, value={"unserializable": str(exc)}).to_dict()
