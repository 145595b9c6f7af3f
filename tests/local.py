"""What tests need of this machine: a free loopback port, the system's headless browser, and
how fast the bundled model runs here (so that a timeout meant to land mid-reply does, on a
fast machine or a loaded one)."""

from __future__ import annotations

import contextlib
import functools
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import attrs
import trio

import agtl
from agtl_llamacpp import LlamaCppProvider

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def system_browser() -> str:
    """The path of a Chromium-family browser on PATH; fails the test if there is none."""
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    assert found is not None, "no headless browser on PATH (make test installs chromium)"
    return found


#: The project's directory, where `agtl` subcommands are started.
PROJECT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def listening_agtl(*arguments: str, seconds: float = 60) -> Iterator[None]:
    """``agtl <arguments>`` (a server: mcp-serve --http, a2a-serve) running until the block
    ends; entered once it says on stderr that it listens (a line or two of its libraries'
    own may come first)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "agtl.cli", *arguments],
        cwd=PROJECT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if "listening on" in line:
                break
        else:
            raise AssertionError(f"agtl {arguments[0]} never said it listens")
        yield
    finally:
        process.terminate()
        process.wait(seconds)


def rendered_dom(page: Path, profile: Path) -> str:
    """The DOM the system's headless browser renders for the local ``page`` (offline, with a
    fresh profile in ``profile``); fails the test if the browser fails."""
    rendered = subprocess.run(
        [
            system_browser(),
            *("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"),
            *("--disable-background-networking", "--disable-component-update", "--disable-sync"),
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    return rendered.stdout


@attrs.frozen
class Speed:
    """How fast the bundled model runs on this machine, measured, not assumed."""

    first_token: float  # seconds to the first token of a short prompt, on a fresh model
    decode: float  # tokens per second once it streams

    def cut_after(self, tokens: int) -> float:
        """A timeout that lands, on this machine, after about ``tokens`` tokens of a reply to
        a short prompt (twice the first token's wait, for a loaded machine)."""
        return 2 * self.first_token + tokens / self.decode


@functools.cache
def bundled_model_speed() -> Speed:
    """Measured once per test process, in a thread of its own (callers may be inside trio)."""
    box: list[Speed] = []

    async def measure() -> None:
        async with LlamaCppProvider(n_ctx=2048) as provider:

            async def essay(session: agtl.Session) -> None:
                await session.generate_text(
                    prompt="Write a long essay about the sea.", max_tokens=48, temperature=0
                )

            result = await provider.simple_execution(essay).result()
        [call] = result.summary.llm_calls
        assert call.time_to_first_token is not None, call
        rate = call.details.get("decode_tokens_per_second")
        assert isinstance(rate, float), call.details
        box.append(Speed(first_token=call.time_to_first_token, decode=rate))

    thread = threading.Thread(target=trio.run, args=(measure,), name="measure-model-speed")
    thread.start()
    thread.join(120)
    assert box, "could not measure the bundled model's speed"
    print(f"bundled model on this machine: {box[0]}")
    return box[0]
