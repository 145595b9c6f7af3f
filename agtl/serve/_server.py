"""Running the app on Hypercorn's trio worker until a shutdown is asked for."""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from starlette.types import ASGIApp

__all__ = ["serve"]


async def serve(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    shutdown: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` until ``shutdown()`` returns (default: until cancelled).

    With ``nursery.start(...)``, the caller learns the bound addresses once it listens.
    """
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = None  # agtl logs through structlog; Hypercorn's lines add nothing
    config.graceful_timeout = 15.0
    trigger = shutdown if shutdown is not None else trio.sleep_forever
    try:
        await hypercorn_serve(app, config, shutdown_trigger=trigger, task_status=task_status)  # type: ignore[arg-type]
    except (OSError, BaseExceptionGroup) as exc:
        # Hypercorn binds inside a nursery of its own: its bind error comes wrapped. Say it
        # in one plain OSError, with what to do.
        if not address_in_use(exc):
            raise
        raise OSError(
            errno.EADDRINUSE,
            f"cannot listen on {config.bind[0]}: the address is already in use (another "
            "server holds the port): pick another port",
        ) from None


def address_in_use(error: BaseException) -> bool:
    """Whether ``error`` is, or holds, an "address already in use" bind error."""
    if isinstance(error, OSError):
        return error.errno == errno.EADDRINUSE
    if isinstance(error, BaseExceptionGroup):
        return any(address_in_use(inner) for inner in error.exceptions)
    return False
