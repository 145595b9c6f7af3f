"""What tests need of this machine: a free loopback port, the system's headless browser."""

from __future__ import annotations

import shutil
import socket

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
