"""`agtl worker`: serve a Temporal task queue with agtl executions until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import sys
from pathlib import Path

from agtl.cli._common import CliError
from agtl.cli._temporal import address_of, connect

_SIGNAL_NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "Ctrl-C"}


def run(args: argparse.Namespace) -> int:
    try:
        from agtl.temporal import serve
    except ImportError:
        raise CliError("agtl worker needs its extra", "pip install 'agtl[temporal]'") from None
    from agtl.reporting import JsonlSink

    if args.concurrency < 1:
        raise CliError(f"--concurrency must be at least 1, not {args.concurrency}")
    if not 0 < args.heartbeat_every < math.inf:  # also NaN
        raise CliError(
            f"--heartbeat-every must be a positive number of seconds, not {args.heartbeat_every}"
        )
    if not 0 <= args.drain < math.inf:
        raise CliError(f"--drain must be a number of seconds >= 0, not {args.drain}")
    for directory in args.path:
        if not Path(directory).is_dir():
            raise CliError(f"--path {directory}: no such directory")
        sys.path.insert(0, str(Path(directory).resolve()))
    sink = None
    if args.log_summaries:
        target = Path(args.log_summaries).expanduser()
        if not target.parent.is_dir():
            raise CliError(f"--log-summaries {args.log_summaries}: no such directory")
        sink = JsonlSink(target)

    async def main() -> None:
        client = await connect(args.address, args.namespace, args.profile)
        address = address_of(client)
        loop = asyncio.get_running_loop()
        stop: asyncio.Future[str] = loop.create_future()
        hurry: asyncio.Future[str] = loop.create_future()  # a second signal ends a drain

        def request_stop(signum: signal.Signals) -> None:
            if not stop.done():
                stop.set_result(f"the worker was stopped ({_SIGNAL_NAMES[signum]})")
                if args.drain:
                    print(
                        f"agtl worker {os.getpid()}: draining: no new work; what runs gets up "
                        f"to {args.drain:g} s to finish ({_SIGNAL_NAMES[signum]} again to "
                        "cancel it now)",
                        flush=True,
                    )
            elif not hurry.done():
                hurry.set_result(_SIGNAL_NAMES[signum])

        for signum in _SIGNAL_NAMES:
            loop.add_signal_handler(signum, request_stop, signum)

        def ready() -> None:
            print(
                f"agtl worker {os.getpid()}: serving task queue {args.task_queue!r} at "
                f"{address}, {args.concurrency} at a time (Ctrl-C or SIGTERM stops)",
                flush=True,
            )

        await serve(
            client,
            stop,
            task_queue=args.task_queue,
            concurrency=args.concurrency,
            summary_sink=sink,
            heartbeat_every=args.heartbeat_every,
            drain=args.drain,
            hurry=hurry,
            on_ready=ready,
        )
        print(f"agtl worker {os.getpid()}: stopped", flush=True)

    asyncio.run(main())
    # The Temporal SDK's native threads can abort the interpreter's finalization ("Fatal
    # Python error: PyGILState_Release", temporalio/sdk-python#300): everything is settled
    # and flushed by now, so leave without it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
