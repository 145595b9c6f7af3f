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

from tests.reliability.test_cancel_fuzz import CANCELLING, CELL_TARGET, POINT_NAMES

#: The full profile's target: this many scripted cases that really cancelled.
SCRIPTED_CANCELLED_TARGET = 5000


def _table(title: str, rows: dict[str, list[int]]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("category")
    table.add_column("cases ran", justify="right")
    table.add_column("held", justify="right")
    table.add_column("", justify="center")
    table.add_column("cancelled", justify="right")
    for name, (ran, held, cancelled) in sorted(rows.items()):
        status = "ok" if ran == held else "BROKEN"
        table.add_row(name, f"{ran:,}", f"{held:,}", status, f"{cancelled:,}")
    return table


def _scripted_cells(data: dict[str, dict[str, int]], *, full: bool) -> tuple[Table, bool]:
    """Cases that really cancelled per mechanism x point of the scripted fuzz (hosts summed)."""
    cells: dict[str, int] = defaultdict(int)
    for category, counts in data.items():
        family, _, cell = category.partition(": ")
        if family.startswith("scripted "):
            cells[cell] += counts.get("cancelled", 0)
    table = Table(
        title=f"Scripted fuzz: cases that cancelled per cell (target >= {CELL_TARGET} each)",
        title_justify="left",
    )
    table.add_column("mechanism, point")
    table.add_column("cancelled", justify="right")
    table.add_column("", justify="center")
    met = True
    for mechanism, point in CANCELLING:
        name = f"{mechanism}, {POINT_NAMES[point]}"
        enough = cells[name] >= CELL_TARGET
        met = met and enough
        table.add_row(name, f"{cells[name]:,}", "ok" if enough else ("LOW" if full else "-"))
    total = sum(cells[f"{m}, {POINT_NAMES[p]}"] for m, p in CANCELLING)
    table.add_row("all cells", f"{total:,}", "ok" if total >= SCRIPTED_CANCELLED_TARGET else "")
    return table, met and total >= SCRIPTED_CANCELLED_TARGET


def main(path: str) -> int:
    data = json.loads(Path(path).read_text())
    by_mechanism: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    by_point: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
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
            rows[key][2] += counts.get("cancelled", 0)
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    profile = "quick profile" if data["quick"] else "full profile"
    console.print(_table(f"Reliability ({profile}): by mechanism or fault", by_mechanism))
    console.print(_table("By cancel point", by_point))
    ran = sum(c["ran"] for c in data["categories"].values())
    held = sum(c["held"] for c in data["categories"].values())
    full = not data["quick"]
    cells, cells_met = _scripted_cells(data["categories"], full=full)
    console.print(cells)
    console.print(f"total: {ran:,} cases ran, {held:,} held")
    if full and not cells_met:
        console.print(
            f"[red]the scripted fuzz missed its targets[/red] (>= {SCRIPTED_CANCELLED_TARGET:,} "
            f"cases that cancelled, >= {CELL_TARGET} in every cell)"
        )
        return 1
    return 0 if ran == held and ran > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
