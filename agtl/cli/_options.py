"""Every option of every subcommand checked in one place, before anything loads.

A wrong value is one line, in one style: the flag as typed, what is wrong with the value, and
exit status 2 (:class:`CliError`). Checks run on the parsed arguments, so a model is never
loaded, a server never started, before a typo is reported.
"""

from __future__ import annotations

import argparse
import json
import math
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agtl.cli._common import CliError

__all__ = ["check_options", "read_input"]


def _seconds(flag: str, value: float, *, zero: bool = False) -> None:
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        wanted = "a number of seconds >= 0" if zero else "a positive number of seconds"
        raise CliError(f"{flag} must be {wanted}, not {value:g}")


def _count(flag: str, value: int, minimum: int = 1) -> None:
    if value < minimum:
        raise CliError(f"{flag} must be at least {minimum}, not {value}")


def _temperature(flag: str, value: float) -> None:
    if not (math.isfinite(value) and 0 <= value <= 2):
        raise CliError(f"{flag} must be between 0 and 2, not {value:g}")


def _port(flag: str, value: int) -> None:
    if not 0 < value < 65536:
        raise CliError(f"{flag} must be a TCP port from 1 to 65535, not {value}")


def _host(flag: str, value: str) -> None:
    try:
        socket.getaddrinfo(value, None)
    except (OSError, UnicodeError):
        raise CliError(
            f"{flag} {value}: not an address this machine can listen on",
            "e.g. --host 127.0.0.1 (this machine only) or --host 0.0.0.0 (every interface)",
        ) from None


def _writable_file(flag: str, value: str) -> None:
    path = Path(value).expanduser()
    if not path.parent.is_dir():
        raise CliError(
            f"{flag} {value}: no such directory {path.parent}",
            "create it first, or pick another path",
        )
    if path.is_dir():
        raise CliError(f"{flag} {value}: is a directory, not a file")
    existed = path.exists()
    try:
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise CliError(f"{flag} {value}: cannot write there ({exc.strerror or exc})") from None
    if not existed:
        path.unlink(missing_ok=True)  # made only to find out; the sink makes it again


def _directory(flag: str, value: str) -> None:
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise CliError(f"{flag} {value}: not a directory", f"pass a directory for {flag}")
    if not path.exists() and not path.parent.is_dir():
        raise CliError(f"{flag} {value}: no such directory {path.parent}")


def _file(flag: str, value: str) -> None:
    if not Path(value).expanduser().is_file():
        raise CliError(f"{flag} {value}: no such file")


def _json(flag: str, value: str) -> None:
    try:
        json.loads(value)
    except ValueError as exc:
        raise CliError(
            f"{flag}: not JSON ({exc})", 'quote it for the shell, e.g. --input \'{"q": "hi"}\''
        ) from None


#: attribute -> (the flag as the user types it, its check)
_CHECKS: dict[str, tuple[str, Callable[[str, Any], None]]] = {
    "timeout": ("--timeout", _seconds),
    "temperature": ("--temperature", _temperature),
    "max_tokens": ("--max-tokens", _count),
    "port": ("--port", _port),
    "host": ("--host", _host),
    "max_running": ("--max-running", _count),
    "grace": ("--grace", lambda flag, value: _seconds(flag, value, zero=True)),
    "conversations": ("--conversations", _directory),
    "log_summaries": ("--log-summaries", _writable_file),
    "concurrency": ("--concurrency", _count),
    "heartbeat_every": ("--heartbeat-every", _seconds),
    "drain": ("--drain", lambda flag, value: _seconds(flag, value, zero=True)),
    "model_path": ("--model-path", _file),
    "input": ("--input", _json),
    "input_file": ("--input-file", _file),
    "html": ("--html", _writable_file),
    "repeat": ("--repeat", _count),
    "http": ("--http", _port),
}


def check_options(args: argparse.Namespace) -> None:
    """Check every option the subcommand has and the user gave (or left at its default)."""
    for attribute, (flag, check) in _CHECKS.items():
        value = getattr(args, attribute, None)
        if value is not None:
            check(flag, value)
    if getattr(args, "model_path", None) and getattr(args, "base_url", None):
        raise CliError("--model-path and --base-url exclude each other", "pick one model source")
    if getattr(args, "input", None) is not None and getattr(args, "input_file", None):
        raise CliError("--input and --input-file exclude each other", "pass the input once")


def read_input(args: argparse.Namespace) -> Any:
    """The workflow's input from ``--input`` or ``--input-file`` (JSON), else ``None``."""
    if getattr(args, "input", None) is not None:
        return json.loads(args.input)
    if getattr(args, "input_file", None):
        text = Path(args.input_file).expanduser().read_text(encoding="utf-8")
        try:
            return json.loads(text)
        except ValueError as exc:
            raise CliError(f"--input-file {args.input_file}: not JSON ({exc})") from None
    return None
