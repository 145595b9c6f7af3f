"""`agtl eval DATASET FILE.py:FUNCTION` and `agtl eval compare A.jsonl B.jsonl`."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import signal
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import trio

import agtl
from agtl import evals
from agtl._sync import INTERRUPT_REASON
from agtl.cli._common import CliError, console, money, provider_for
from agtl.cli._run import load_workflow
from agtl.errors import InvalidArgumentError

__all__ = ["run"]

#: Exit status: the run went through every case (whatever their outcome), or stopped early.
COMPLETED, STOPPED = 0, 3


def run(args: argparse.Namespace) -> int:
    words: Sequence[str] = args.words
    if words and words[0] == "compare":
        if len(words) != 3:
            raise CliError(
                "compare takes two results files", "e.g. agtl eval compare before.jsonl after.jsonl"
            )
        return _compare(Path(words[1]), Path(words[2]))
    if len(words) != 2:
        raise CliError(
            "eval takes a dataset and a workflow",
            "e.g. agtl eval examples/evals/capitals.jsonl examples/evals/capitals.py:answer",
        )
    dataset_path, target = words
    scorers = [_scorer(spec) for spec in args.scorer]  # options first, then the data
    try:
        dataset = evals.Dataset.load(dataset_path)
    except evals.DatasetError as error:
        raise CliError(str(error)) from None
    max_cost = _max_cost(args.max_cost)
    if args.temporal is None and (args.worker_provider or args.task_queue != "agtl"):
        raise CliError("--worker-provider and --task-queue need --temporal")
    out = Path(args.out) if args.out else _default_out(dataset_path)
    if out.exists() and not args.resume:
        raise CliError(f"--out {out}: the file exists", "pass --resume to go on with it")
    if args.resume and not out.exists():
        raise CliError(f"--resume: {out} does not exist", "name the run to resume with --out")
    workflow = load_workflow(target)
    provider = provider_for(workflow, args)
    if args.judge:
        scorers.append(evals.llm_judge(args.judge, temperature=0))
    remote = None if args.temporal is None else _remote(target, args, out)
    try:
        finished = trio.run(_run, dataset, workflow, provider, scorers, args, out, max_cost, remote)
    finally:
        trio.run(provider.aclose)
    report = evals.EvalReport.read(out)
    _print_report(report)
    if args.html:
        Path(args.html).write_text(evals.to_html(report), encoding="utf-8")
        console().print(f"report: {args.html}")
    console().print(f"results: {out}")
    if finished.stopped is not None:
        console().print(f"[yellow]stopped:[/] {finished.stopped}")
        return STOPPED
    return COMPLETED


def _scorer(spec: str) -> evals.Scorer:
    try:
        return evals.resolve(spec)
    except InvalidArgumentError as error:
        raise CliError(f"--scorer {spec}: {error.problem}", "e.g. --scorer exact") from None


def _max_cost(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise CliError(f"--max-cost must be an amount in USD, not {value!r}") from None
    if not amount.is_finite() or amount <= 0:
        raise CliError(f"--max-cost must be more than 0 USD, not {value}")
    return amount


def _default_out(dataset: str) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(f"{Path(dataset).stem}-{stamp}.jsonl")


async def _run(
    dataset: evals.Dataset,
    workflow: Any,
    provider: agtl.Provider,
    scorers: list[evals.Scorer],
    args: argparse.Namespace,
    out: Path,
    max_cost: Decimal | None,
    remote: Any,
) -> evals.EvalRun:
    """The run, with a progress bar on a terminal; the first Ctrl-C stops it (running cases
    are cancelled and kept), a second one exits."""
    interrupted = agtl.CancelSignal()
    show = _Bar(console())
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery, contextlib.AsyncExitStack() as stack:
            nursery.start_soon(_watch_ctrl_c, signals, interrupted)
            run_on = None if remote is None else await stack.enter_async_context(remote())
            with show:
                finished = await evals.run(
                    dataset,
                    workflow,
                    provider,
                    scorers=scorers,
                    concurrency=args.concurrency,
                    repeat=args.repeat,
                    timeout=args.timeout,
                    max_cost=max_cost,
                    out=out,
                    resume=args.resume,
                    cancel=interrupted,
                    on_progress=show.update,
                    executor=run_on,
                )
            nursery.cancel_scope.cancel()
    return finished


def _remote(target: str, args: argparse.Namespace, out: Path) -> Any:
    """What runs each case on Temporal: workers import the workflow (a file named as
    ``dir/flows.py:fn`` becomes ``dir.flows:fn``, for workers started with the project on
    their --path) and build the provider the options describe."""
    try:
        from agtl.evals import temporal as on_temporal
        from agtl.temporal import ProviderSpec
    except ImportError:
        raise CliError("--temporal needs its extra", "pip install 'agtl[temporal]'") from None
    path, _, function = target.rpartition(":")
    if path.endswith(".py"):
        module = Path(path).with_suffix("")
        if module.is_absolute():
            try:
                module = module.relative_to(Path.cwd())
            except ValueError:
                raise CliError(
                    f"--temporal: {target} is outside this directory",
                    "name it as package.module:function, as the workers import it",
                ) from None
        path = ".".join(module.parts)
    options = {} if args.temperature is None else {"temperature": args.temperature}
    if args.worker_provider:
        spec = ProviderSpec.factory(args.worker_provider)
    elif args.base_url:
        spec = ProviderSpec.openai(args.base_url, args.model, **options)
    else:
        spec = ProviderSpec.local(**options)
    return functools.partial(
        on_temporal.executor,
        f"{path}:{function}",
        spec,
        address=args.temporal or None,
        namespace=args.namespace,
        profile=args.profile,
        task_queue=args.task_queue,
        prefix=f"agtl-eval-{out.stem}",
    )


async def _watch_ctrl_c(signals: AsyncIterator[int], interrupted: agtl.CancelSignal) -> None:
    async for _ in signals:
        if interrupted.cancelled:
            raise KeyboardInterrupt
        interrupted.cancel(INTERRUPT_REASON)


class _Bar:
    """A rich progress bar on a terminal (done / running / failed / canceled, cost, ETA);
    nothing elsewhere."""

    def __init__(self, out: Any) -> None:
        self._live = out.is_terminal
        self._progress: Any = None
        self._task: Any = None
        if self._live:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("eval"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeRemainingColumn(),
                console=out,
                transient=True,
            )

    def __enter__(self) -> _Bar:
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task("eval", total=None, detail="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, progress: evals.Progress) -> None:
        if self._progress is None or self._task is None:
            return
        detail = (
            f"running {progress.running}, failed {progress.failed}, canceled "
            f"{progress.canceled}, {money(progress.cost)}"
        )
        self._progress.update(
            self._task,
            total=progress.total,
            completed=progress.done + progress.skipped,
            detail=detail,
        )


def _print_report(report: evals.EvalReport) -> None:
    from rich.table import Table

    out = console()
    scores = Table(title="Scores", title_justify="left")
    for column in ("scorer", "kind", "value", "95% interval", "cases"):
        scores.add_column(column, justify="left" if column in ("scorer", "kind") else "right")
    for stat in report.scorers:
        scores.add_row(
            stat.name,
            stat.kind,
            f"{stat.value:.3f}",
            f"[{stat.low:.3f}, {stat.high:.3f}]",
            str(stat.n),
        )
    out.print(scores)
    latency = report.latency()
    tokens_in, tokens_out = report.tokens
    counts = ", ".join(f"{status} {n}" for status, n in report.by_status.items())
    out.print(
        f"cases: {counts}; cost {money(report.cost)} (scorers {money(report.judge_cost)}); "
        f"tokens in/out {tokens_in:,}/{tokens_out:,}; duration p50 {_s(latency['p50'])} "
        f"p95 {_s(latency['p95'])}; TTFT p50 {_s(latency['ttft_p50'])}"
    )
    if report.skipped_lines:
        out.print(f"[yellow]{report.skipped_lines} unreadable line(s) skipped[/]")
    slowest = ", ".join(f"{row.id} {_s(row.duration)}" for row in report.slowest)
    if slowest:
        out.print(f"slowest: {slowest}")
    expensive = ", ".join(f"{row.id} {money(row.cost)}" for row in report.most_expensive)
    if expensive:
        out.print(f"most expensive: {expensive}")


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def _compare(a: Path, b: Path) -> int:
    from rich.table import Table

    for path in (a, b):
        if not path.is_file():
            raise CliError(f"compare: no such file {path}")
    result = evals.compare(evals.EvalReport.read(a), evals.EvalReport.read(b))
    out = console()
    table = Table(title=f"{b} against {a}", title_justify="left")
    for column in ("scorer", "pairs", "A", "B", "test", "p", "differs", "worse", "better"):
        table.add_column(column, justify="left" if column in ("scorer", "test") else "right")
    for each in result.scorers:
        table.add_row(
            each.name,
            str(each.pairs),
            f"{each.mean_a:.3f}",
            f"{each.mean_b:.3f}",
            each.test,
            f"{each.p_value:.4f}",
            "yes" if each.differs else "no",
            str(len(each.regressions)),
            str(len(each.improvements)),
        )
    out.print(table)
    for each in result.scorers:
        for label, changes in (("worse", each.regressions), ("better", each.improvements)):
            for change in changes[:20]:
                out.print(
                    f"  {label}: {change.id} ({each.name}: {change.before} -> {change.after})",
                    markup=False,
                )
    if result.only_in_a or result.only_in_b:
        out.print(f"cases only in A: {result.only_in_a}, only in B: {result.only_in_b}")
    return COMPLETED
