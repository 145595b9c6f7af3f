"""The HTML report (`agtl report --html`); see write_html."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agtl.cli._common import CliError


def write_html(records: Sequence[Mapping[str, Any]], path: Path) -> None:
    raise CliError("--html is not available yet", "use the terminal report for now")
