"""Print the reliability figures: ``python -m tests.reliability.report PATH``.

PATH is the JSON file the reliability suite writes when ``AGTL_RELIABILITY_REPORT`` is set.
Categories are named ``<family>: <mechanism>, <point>``; the tables sum them by mechanism
and by point, so every case is counted once in each table.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table


def _table(title: str, rows: dict[str, list[int]]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("category")
    table.add_column("cases ran", justify="right")
    table.add_column("held", justify="right")
    table.add_column("", justify="center")
    for name, (ran, held) in sorted(rows.items()):
        table.add_row(name, f"{ran:,}", f"{held:,}", "ok" if ran == held else "BROKEN")
    return table


def main(path: str) -> int:
    data = json.loads(Path(path).read_text())
    by_mechanism: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_point: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for category, counts in data["categories"].items():
        family, _, rest = category.partition(": ")
        mechanism, _, point = rest.partition(", ")
        for rows, key in (
            (by_mechanism, f"{family}: {mechanism}"),
            (by_point, f"{family}: {point}"),
        ):
            if key.endswith(": ") or (rows is by_point and not point):
                continue
            rows[key][0] += counts["ran"]
            rows[key][1] += counts["held"]
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    profile = "quick profile" if data["quick"] else "full profile"
    console.print(_table(f"Reliability ({profile}): by mechanism or fault", by_mechanism))
    console.print(_table("By cancel point", by_point))
    ran = sum(c["ran"] for c in data["categories"].values())
    held = sum(c["held"] for c in data["categories"].values())
    console.print(f"total: {ran:,} cases ran, {held:,} held")
    return 0 if ran == held and ran > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
