"""``agtl.run``: an execution from synchronous code (scripts, the REPL, notebooks' plain cells).

Each call is one ``trio.run``. On the main thread, Ctrl-C cancels the execution (source
``signal``) and ``run`` still returns its Result; a second Ctrl-C while it winds down raises
``KeyboardInterrupt`` as usual.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from typing import Final, TypeVar

import trio

from agtl._trio_thread import current_token
from agtl._vocabulary import CancelSource
from agtl.errors import InvalidArgumentError
from agtl.execution import Execution
from agtl.result import Result
from agtl.validation import type_name

__all__ = ["run"]

T = TypeVar("T")

#: The cancel reason recorded when Ctrl-C stops an execution run by :func:`run`.
INTERRUPT_REASON: Final = "interrupted (Ctrl-C)"


def run(execution: Execution[T]) -> Result[T]:
    """Run ``execution`` to its end from synchronous code and return its Result.

    Inside a trio program use ``await execution`` instead; inside asyncio code,
    ``await agtl.aio.result(execution)``.
    """
    if not isinstance(execution, Execution):
        raise InvalidArgumentError(
            "execution",
            f"must be an agtl execution (e.g. provider.generate_text(prompt=...)), "
            f"not {type_name(execution)}",
        )
    if execution.started:
        raise InvalidArgumentError(
            "execution", "was already started; agtl.run() runs a new execution to its end"
        )
    if current_token() is not None:
        raise InvalidArgumentError(
            "agtl.run", "was called inside a trio run: use `await execution` there"
        )
    if _asyncio_loop_running():
        raise InvalidArgumentError(
            "agtl.run",
            "was called while an asyncio loop runs on this thread (Jupyter, an async web "
            "app): use `await agtl.aio.result(execution)` there",
        )
    return trio.run(_run, execution)


async def _run(execution: Execution[T]) -> Result[T]:
    if threading.current_thread() is not threading.main_thread():
        return await execution.result()
    with trio.open_signal_receiver(signal.SIGINT) as interrupts:
        async with trio.open_nursery() as nursery:

            async def on_interrupt() -> None:
                async for _ in interrupts:
                    execution._cancel_from(CancelSource.SIGNAL, INTERRUPT_REASON)
                    break
                async for _ in interrupts:
                    raise KeyboardInterrupt

            nursery.start_soon(on_interrupt)
            result = await execution.result()
            nursery.cancel_scope.cancel()
    return result


def _asyncio_loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
