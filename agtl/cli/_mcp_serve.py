"""`agtl mcp-serve FILE.py:FUNCTION ...`: workflows as the tools of an MCP server."""

from __future__ import annotations

import argparse
import sys

import trio

from agtl.cli._common import CliError, provider_for
from agtl.cli._run import load_workflow

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    try:
        from agtl.mcp import serve_workflows
        from agtl.serve import serve
    except ImportError:
        raise CliError("mcp-serve needs its extra", "pip install 'agtl[mcp]'") from None
    workflows = [load_workflow(target) for target in args.targets]
    names = [getattr(w, "__name__", "") for w in workflows]
    if len(set(names)) != len(names):
        raise CliError("two workflows have the same name: each is a tool named after it")
    provider = provider_for(workflows[0], args)

    async def main() -> None:
        async with serve_workflows(workflows, provider, name=args.name) as server:
            if args.http is None:
                await server.run_stdio_async()
                return
            app = server.streamable_http_app(host=args.host)

            async def listening(task_status: trio.TaskStatus[list[str]]) -> None:
                await serve(app, host=args.host, port=args.http, task_status=task_status)

            async with trio.open_nursery() as nursery:
                await nursery.start(listening)
                print(
                    f"agtl mcp-serve: listening on http://{args.host}:{args.http}/mcp",
                    file=sys.stderr,
                    flush=True,
                )

    try:
        trio.run(main)
    except KeyboardInterrupt:
        return 0
    finally:
        trio.run(provider.aclose)
    return 0
