"""`agtl serve FILE.py:FUNCTION`: executions over HTTP with server-sent events, and a chat page."""

from __future__ import annotations

import argparse
import functools
import ipaddress
import os
import secrets
import signal

import trio

from agtl.cli._common import CliError, console, provider_for
from agtl.cli._run import load_workflow

#: Where the bearer token comes from, when set; otherwise one is made and printed.
TOKEN_ENV = "AGTL_SERVE_TOKEN"


def run(args: argparse.Namespace) -> int:
    try:
        from agtl.serve import create_app, serve
        from agtl.serve._server import address_in_use
    except ImportError:
        raise CliError("agtl serve needs its extra", "pip install 'agtl[serve]'") from None
    workflow = load_workflow(args.target) if args.target else None
    provider = provider_for(workflow, args)
    token = _token(args.host)
    app = create_app(
        workflow,
        provider,
        token=token,
        max_running=args.max_running,
        disconnect_grace=args.grace,
        conversations=args.conversations,
        system=args.system,
    )
    out = console()

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

            async def shutdown() -> None:
                async for _ in signals:
                    return

            async with trio.open_nursery() as nursery:
                start = functools.partial(
                    serve, app, host=args.host, port=args.port, shutdown=shutdown
                )
                await nursery.start(start)
                host = f"[{args.host}]" if ":" in args.host else args.host
                url = f"http://{host}:{args.port}/"
                served = f"{args.target} and chat" if args.target else "chat only"
                out.print(f"agtl serve: listening on {url} ({served}; Ctrl-C stops)")
                if token is not None:
                    out.print(f"bearer token: {token}")
                    out.print(f"chat page: {url}#token={token}")

    try:
        trio.run(main)
    except (OSError, BaseExceptionGroup) as exc:
        if not address_in_use(exc):
            raise
        raise CliError(
            f"port {args.port} on {args.host} is already in use",
            "pick another with --port, or stop the server that holds it",
        ) from None
    finally:
        trio.run(provider.aclose)
    out.print("agtl serve: stopped")
    return 0


def _token(host: str) -> str | None:
    """From the environment; else, when reachable beyond this machine, a new one."""
    given = os.environ.get(TOKEN_ENV)
    if given:
        if len(given) < 16:
            raise CliError(f"{TOKEN_ENV} is too short", "use at least 16 characters")
        return given
    if _loopback(host):
        return None
    return secrets.token_urlsafe(24)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
