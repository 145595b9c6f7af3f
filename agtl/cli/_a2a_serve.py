"""`agtl a2a-serve FILE.py:FUNCTION`: a workflow as an A2A agent (on asyncio, as the SDK is)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from agtl.cli._common import CliError, provider_for
from agtl.cli._run import load_workflow

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    try:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        from agtl import a2a, aio
    except ImportError:
        raise CliError("a2a-serve needs its extra", "pip install 'agtl[a2a]'") from None
    workflow = load_workflow(args.target)
    provider = provider_for(workflow, args)
    url = f"http://{args.host}:{args.port}/"
    app = a2a.create_app(workflow, provider, url=url)

    async def main() -> None:
        config = Config()
        config.bind = [f"{args.host}:{args.port}"]
        config.accesslog = None
        config.errorlog = None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for each in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(each, stop.set)
        serving = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        try:
            await _listening(args.host, args.port, serving)
            print(f"agtl a2a-serve: listening on {url}", file=sys.stderr, flush=True)
            await serving
        finally:
            await aio.call(provider.aclose)
            await aio.shutdown()

    asyncio.run(main())
    return 0


async def _listening(host: str, port: int, serving: asyncio.Task[None]) -> None:
    """Return once the server accepts connections (Hypercorn says nothing when it binds);
    the server's own error if it stopped first."""
    async with asyncio.timeout(30):
        while True:
            if serving.done():
                serving.result()  # its error, such as the port in use
                raise CliError(f"the server on {host}:{port} stopped before it listened")
            try:
                _, writer = await asyncio.open_connection(host, port)
            except OSError:
                await asyncio.sleep(0.01)
                continue
            writer.close()
            await writer.wait_closed()
            return
