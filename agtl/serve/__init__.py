"""``agtl serve``: streaming executions over HTTP with server-sent events, and a chat page.

:func:`create_app` builds the ASGI app (Starlette); :func:`serve` runs it on Hypercorn's trio
worker, so executions are tasks of the server's own trio loop. Needs the ``serve`` extra
(``pip install 'agtl[serve]'``). The HTTP API is described in guides/serving.md.
"""

from __future__ import annotations

from agtl.serve._app import create_app
from agtl.serve._registry import DISCONNECTED, SHUTTING_DOWN
from agtl.serve._server import serve

__all__ = ["DISCONNECTED", "SHUTTING_DOWN", "create_app", "serve"]
