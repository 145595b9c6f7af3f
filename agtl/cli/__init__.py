"""The `agtl` command: demo, chat, run, serve, worker, report and eval."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from agtl.cli._common import CliError, add_provider_arguments, configure_logging, console
from agtl.cli._options import check_options
from agtl.cli._temporal import CONFIG_HELP, add_connection_arguments
from agtl.errors import AgtlError

__all__ = ["main"]

_EPILOG = """examples:
  agtl demo                                   what agtl does, on the bundled model (no network)
  agtl chat                                   chat with the bundled model; Ctrl-C stops a reply
  agtl chat --base-url http://host:8000/v1 --model qwen
  agtl run examples/quickstart.py:answer --timeout 30 --json
  agtl report summaries.jsonl --html report.html
  agtl serve examples/serve_app.py:research --port 8000
  agtl worker --address 127.0.0.1:7233        run executions submitted through Temporal
  agtl eval cases.jsonl flow.py:answer --scorer exact --concurrency 8
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agtl",
        description="Run LLM workflows with cancellation, usage and cost you can trust.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_noise(parser, default=False)
    # Every subcommand takes -v/-q too (after its own arguments, where people type them).
    noisy = argparse.ArgumentParser(add_help=False)
    _add_noise(noisy, default=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        parents=[noisy],
        help="a one-minute tour on the bundled model",
        description="Streams a reply, stops one with a timeout, races two executions, and shows "
        "what each cost. Runs offline on the bundled SmolLM2 model.",
        epilog="example:\n  agtl demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.set_defaults(
        handler="demo", base_url=None, model=None, log_summaries=None, temperature=0.0
    )

    chat = commands.add_parser(
        "chat",
        parents=[noisy],
        help="interactive chat (Ctrl-C stops the reply; again at the prompt exits)",
        description="Chat on the bundled model or an OpenAI-compatible server. Ctrl-C stops the "
        "current reply and keeps what was said; Ctrl-C at the prompt (or Ctrl-D) exits. Commands: "
        "/save PATH, /load PATH, /summary, /reset. Piped input works too (exit status 4 when a "
        "turn failed).",
        epilog="examples:\n  agtl chat\n  echo 'What is the capital of France?' | agtl chat\n"
        "  agtl chat --base-url http://localhost:8000/v1 --model qwen",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_provider_arguments(chat)
    chat.add_argument("--system", default="You are a helpful assistant.", help="the system prompt")
    chat.add_argument("--max-tokens", type=int, default=512, help="longest reply (default 512)")
    chat.set_defaults(handler="chat", temperature=0.0)

    run = commands.add_parser(
        "run",
        parents=[noisy],
        help="run a workflow from a file: FILE.py:FUNCTION",
        description="Run an async function or async generator that takes a session, or a "
        "session and an input (--input/--input-file; None without). Streamed "
        "events are printed live, then the summary. Ctrl-C cancels the execution and still "
        "shows its result; -v shows a failed workflow's traceback. "
        "Exit status: 0 succeeded, 3 canceled, 4 failed.",
        epilog="examples:\n  agtl run examples/quickstart.py:answer\n"
        "  agtl run my_flow.py:research --timeout 60 --json --log-summaries runs.jsonl\n"
        "  agtl run examples/serve_app.py:research --input '\"trio\"'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("target", metavar="FILE.py:FUNCTION")
    add_provider_arguments(run)
    run.add_argument("--timeout", type=float, help="cancel the execution after this many seconds")
    run.add_argument(
        "--input",
        metavar="JSON",
        help="the input, as JSON, for a workflow taking (session, input)",
    )
    run.add_argument("--input-file", metavar="PATH", help="the input, from a JSON file")
    run.add_argument(
        "--approve-all",
        action="store_true",
        help="approve every tool call that needs approval (default: ask on the terminal; "
        "no answer denies)",
    )
    run.add_argument(
        "--json",
        action="store_true",
        help="print the result and summary as one JSON document on stdout (what the "
        "workflow prints goes to stderr)",
    )
    run.set_defaults(handler="run")

    serve = commands.add_parser(
        "serve",
        parents=[noisy],
        help="serve a workflow over HTTP (server-sent events) with a chat page",
        description="Start executions of FUNCTION(session, input) with POST /executions, "
        "stream their events (GET /executions/ID/events), cancel them, and chat at /. "
        "Binds 127.0.0.1 by default; elsewhere every API call needs the bearer token printed "
        "at start (or set in AGTL_SERVE_TOKEN). See guides/serving.md.",
        epilog="examples:\n  agtl serve examples/serve_app.py:research\n"
        "  agtl serve --port 8080             (the chat page only)\n"
        "  agtl serve flow.py:fn --host 0.0.0.0 --base-url http://gpu:8000/v1 --model qwen",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("target", nargs="?", metavar="FILE.py:FUNCTION")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--max-running", type=int, default=16, help="executions at once; beyond: 429 (default 16)"
    )
    serve.add_argument(
        "--grace",
        type=float,
        default=5.0,
        help="seconds an execution outlives its last client, for a reconnect (default 5)",
    )
    serve.add_argument("--conversations", metavar="DIR", help="keep chat histories in DIR")
    serve.add_argument("--system", default=None, help="the chat's system prompt")
    add_provider_arguments(serve)
    serve.set_defaults(handler="serve")

    worker = commands.add_parser(
        "worker",
        parents=[noisy],
        help="run agtl executions submitted through Temporal",
        description="Serves a Temporal task queue: each execution submitted with "
        "agtl.temporal.submit runs here, at most --concurrency at a time. SIGTERM or Ctrl-C stops "
        "taking work and cancels what runs, at once or after --drain seconds (each Result still "
        "goes back to its workflow).",
        epilog=f"{CONFIG_HELP}\n\nexamples:\n"
        "  agtl worker --address 127.0.0.1:7233 --concurrency 8\n"
        "  agtl worker --path ./flows --log-summaries runs.jsonl --drain 60\n"
        "  TEMPORAL_ADDRESS=temporal.example.com:7233 TEMPORAL_NAMESPACE=evals "
        "TEMPORAL_API_KEY=... agtl worker",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.add_argument(
        "--address", default=None, help="the Temporal server, host:port (default: see below)"
    )
    add_connection_arguments(worker)
    worker.add_argument("--task-queue", default="agtl", help="the task queue (default agtl)")
    worker.add_argument("--concurrency", type=int, default=4, help="executions at once (default 4)")
    worker.add_argument(
        "--path",
        action="append",
        default=[],
        metavar="DIR",
        help="a directory to import workflow modules from (repeatable)",
    )
    worker.add_argument(
        "--log-summaries", metavar="FILE", help="append every execution's record to FILE"
    )
    worker.add_argument(
        "--heartbeat-every",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="how often a running execution reports to Temporal at most; a cancel lands within "
        "it (default 0.5)",
    )
    worker.add_argument(
        "--drain",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="on SIGTERM or Ctrl-C, take no new work and give what runs up to SECONDS to finish "
        "before cancelling it (default 0: cancel at once; a second signal cuts the drain short)",
    )
    worker.set_defaults(handler="worker")

    report = commands.add_parser(
        "report",
        parents=[noisy],
        help="aggregate a summary file written by --log-summaries, or executions on Temporal",
        description="Per provider/model: executions by status, tokens, cost, and duration and "
        "time-to-first-token percentiles. With --temporal, of the finished executions run "
        "through agtl worker.",
        epilog="examples:\n  agtl report runs.jsonl\n  agtl report runs.jsonl --html report.html"
        "\n  agtl report --temporal 127.0.0.1:7233 --query \"StartTime > '2026-11-01T00:00:00Z'\""
        f"\n\n{CONFIG_HELP}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("path", metavar="PATH", nargs="?")
    report.add_argument(
        "--temporal",
        metavar="ADDRESS",
        nargs="?",
        const="",
        help="report the executions finished on this Temporal (no ADDRESS: see below)",
    )
    add_connection_arguments(report, prefix="with --temporal: ")
    report.add_argument("--query", help="with --temporal: a Temporal list filter to narrow them")
    report.add_argument("--html", metavar="OUT.html", help="also write a self-contained HTML page")
    report.set_defaults(handler="report")

    evaluate = commands.add_parser(
        "eval",
        parents=[noisy],
        help="run a workflow over a dataset and score it; or compare two runs",
        description="Runs FUNCTION(session, input) on every case of DATASET (.jsonl, .csv or "
        ".yaml: id, input, expected, metadata), at most --concurrency at once, scores what "
        "succeeded, and appends one JSON line per finished case to --out as it finishes. "
        "Ctrl-C cancels the running cases (kept, with what they cost) and reports what "
        "finished; --resume runs only what --out does not hold as finished. "
        "`agtl eval compare A.jsonl B.jsonl` says per scorer whether B differs from A. "
        "Exit status: 0 every case ran, 3 stopped early (Ctrl-C, --max-cost).",
        epilog="examples:\n  agtl eval examples/evals/capitals.jsonl "
        "examples/evals/capitals.py:answer --scorer contains --out run.jsonl\n"
        "  agtl eval cases.csv flow.py:fn --scorer exact --scorer mod:score --repeat 3 "
        "--max-cost 2.50 --html report.html\n"
        "  agtl eval compare before.jsonl after.jsonl",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("words", nargs="+", metavar="DATASET FILE.py:FUNCTION | compare A B")
    evaluate.add_argument(
        "--scorer",
        action="append",
        default=[],
        metavar="NAME|module:function",
        help="a built-in scorer (exact, contains, regex) or module:function (repeatable)",
    )
    evaluate.add_argument(
        "--judge", metavar="RUBRIC", help="also score with an LLM judge of this rubric"
    )
    evaluate.add_argument("--concurrency", type=int, default=8, help="cases at once (default 8)")
    evaluate.add_argument("--repeat", type=int, default=1, help="runs of each case (default 1)")
    evaluate.add_argument("--timeout", type=float, help="cancel a case after this many seconds")
    evaluate.add_argument(
        "--max-cost",
        metavar="USD",
        help="stop starting cases, and cancel the running ones, once the run cost this much",
    )
    evaluate.add_argument(
        "--out", metavar="RUN.jsonl", help="the results file (default: DATASET-TIME.jsonl)"
    )
    evaluate.add_argument(
        "--resume", action="store_true", help="go on with --out: skip the cases it finished"
    )
    evaluate.add_argument("--html", metavar="OUT.html", help="also write the report as a page")
    evaluate.add_argument(
        "--temporal",
        metavar="ADDRESS",
        nargs="?",
        const="",
        help="run every case on Temporal workers (agtl worker), the workflow id "
        "'agtl-eval-<out>-<case>-<repeat>': a resumed run never starts a finished case again "
        "(no ADDRESS: see agtl worker --help)",
    )
    add_connection_arguments(evaluate, prefix="with --temporal: ")
    evaluate.add_argument(
        "--task-queue", default="agtl", help="with --temporal: the workers' task queue"
    )
    evaluate.add_argument(
        "--worker-provider",
        metavar="module:function",
        help="with --temporal: a function the workers call to make their provider (default: "
        "the bundled model, or --base-url/--model)",
    )
    add_provider_arguments(evaluate)
    evaluate.set_defaults(handler="eval")

    mcp_serve = commands.add_parser(
        "mcp-serve",
        parents=[noisy],
        help="serve workflows as the tools of an MCP server (stdio, or --http PORT)",
        description="Each FUNCTION(session, ...) is a tool; its input schema comes from the "
        "parameters after the session. A call runs the workflow as an execution; a streaming "
        "workflow's events are progress notifications; the client's cancel cancels the "
        "execution. Speaks MCP on stdin/stdout, or streamable HTTP at /mcp with --http.",
        epilog="examples:\n  agtl mcp-serve flows.py:research flows.py:summarize\n"
        "  agtl mcp-serve flows.py:research --http 8765",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mcp_serve.add_argument("targets", nargs="+", metavar="FILE.py:FUNCTION")
    mcp_serve.add_argument("--http", type=int, metavar="PORT", help="streamable HTTP on PORT")
    mcp_serve.add_argument(
        "--host", default="127.0.0.1", help="with --http: the address (default 127.0.0.1)"
    )
    mcp_serve.add_argument("--name", default="agtl", help="the server's name (default agtl)")
    add_provider_arguments(mcp_serve)
    mcp_serve.set_defaults(handler="mcp-serve")

    a2a_serve = commands.add_parser(
        "a2a-serve",
        parents=[noisy],
        help="serve a workflow as an A2A agent (agent card, message send and stream, cancel)",
        description="An A2A server (the a2a-sdk) for FUNCTION(session, input): each message "
        "starts a task that is an execution of it; its text streams as artifact chunks, its "
        "value is the final artifact; a person it waits for makes the task input-required; "
        "tasks/cancel cancels it.",
        epilog="example:\n  agtl a2a-serve examples/serve_app.py:research --port 9999",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a2a_serve.add_argument("target", metavar="FILE.py:FUNCTION")
    a2a_serve.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    a2a_serve.add_argument("--port", type=int, default=9999, help="port (default 9999)")
    add_provider_arguments(a2a_serve)
    a2a_serve.set_defaults(handler="a2a-serve")
    return parser


def _add_noise(parser: argparse.ArgumentParser, *, default: Any) -> None:
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="show debug logs on stderr"
    )
    noise.add_argument(
        "-q", "--quiet", action="store_true", default=default, help="only errors on stderr"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose and args.quiet:
        build_parser().error("-v/--verbose and -q/--quiet exclude each other")
    configure_logging(args.verbose, args.quiet)
    try:
        check_options(args)
        if args.handler == "demo":
            from agtl.cli._demo import run as handler
        elif args.handler == "chat":
            from agtl.cli._chat import run as handler
        elif args.handler == "run":
            from agtl.cli._run import run as handler
        elif args.handler == "serve":
            from agtl.cli._serve import run as handler
        elif args.handler == "worker":
            from agtl.cli._worker import run as handler
        elif args.handler == "eval":
            from agtl.cli._eval import run as handler
        elif args.handler == "mcp-serve":
            from agtl.cli._mcp_serve import run as handler
        elif args.handler == "a2a-serve":
            from agtl.cli._a2a_serve import run as handler
        else:
            from agtl.cli._report import run as handler
        return handler(args)
    except CliError as exc:
        err = console(stderr=True)
        err.print(f"[red]error:[/] {exc}", soft_wrap=True, markup=True, highlight=False)
        if exc.hint:
            err.print(f"[dim]hint:[/] {exc.hint}", soft_wrap=True)
        return 2
    except AgtlError as exc:
        message = f"[red]error:[/] {type(exc).__name__}: {exc}"
        console(stderr=True).print(message, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
