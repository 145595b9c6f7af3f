"""Running the app on Hypercorn's trio worker until a shutdown is asked for."""

from __future__ import annotations

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
    await hypercorn_serve(app, config, shutdown_trigger=trigger, task_status=task_status)  # type: ignore[arg-type]
