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

import attrs
from rich.console import Console
from rich.table import Table

from tests.reliability.test_cancel_fuzz import CANCELLING, CELL_TARGET, POINT_NAMES

#: The full profile's target: this many scripted cases that really cancelled.
SCRIPTED_CANCELLED_TARGET = 5000
#: The hosts the scripted fuzz runs every cell on.
SCRIPTED_HOSTS = ("simple", "streaming")


@attrs.define
class Row:
    """One row of a table: categories summed."""

    ran: int = 0
    checked: int = 0
    landed: int = 0
    distinct: int = 0
    seconds: float = 0.0

    def add(self, counts: dict[str, float]) -> None:
        self.ran += int(counts["ran"])
        self.checked += int(counts["checked"])
        self.landed += int(counts["landed"])
        self.distinct += int(counts["distinct"])
        self.seconds += float(counts["seconds"])


def _table(title: str, rows: dict[str, Row]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("category")
    table.add_column("checked", justify="right")
    table.add_column("landed", justify="right")
    table.add_column("distinct", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("", justify="center")
    for name, row in sorted(rows.items()):
        status = "ok" if row.ran == row.checked else "UNCHECKED"
        table.add_row(
            name,
            f"{row.checked:,}",
            f"{row.landed:,}",
            f"{row.distinct:,}",
            f"{row.seconds:,.1f}",
            status,
        )
    return table


def _scripted_cells(data: dict[str, dict[str, int]], *, full: bool) -> tuple[Table, bool]:
    """Cases that really cancelled per mechanism x point of the scripted fuzz (hosts summed)."""
    cells: dict[str, int] = defaultdict(int)
    for category, counts in data.items():
        family, _, cell = category.partition(": ")
        if family.startswith("scripted "):
            cells[cell] += int(counts["landed"])
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
    by_mechanism: dict[str, Row] = defaultdict(Row)
    by_point: dict[str, Row] = defaultdict(Row)
    for category, counts in data["categories"].items():
        family, _, rest = category.partition(": ")
        mechanism, _, point = rest.partition(", ")
        by_mechanism[f"{family}: {mechanism}"].add(counts)
        if point:
            by_point[f"{family}: {point}"].add(counts)
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
    profile = "quick profile" if data["quick"] else "full profile"
    console.print(_table(f"Reliability ({profile}): by mechanism or fault", by_mechanism))
    console.print(_table("By cancel point", by_point))
    total = Row()
    for counts in data["categories"].values():
        total.add(counts)
    full = not data["quick"]
    cells, cells_met = _scripted_cells(data["categories"], full=full)
    console.print(cells)
    console.print(
        f"total: {total.checked:,} cases checked, {total.distinct:,} distinct, "
        f"{total.landed:,} with evidence of landing, {total.seconds:,.0f} s"
    )
    status = 0
    if total.ran == 0:
        console.print("[red]no case ran[/red]")
        status = 1
    if total.ran != total.checked:
        console.print(
            f"[red]{total.ran - total.checked:,} cases started and were not checked[/red]"
        )
        status = 1
    missing = [c for c in _expected_categories(full) if c not in data["categories"]]
    if missing:
        console.print(f"[red]categories with no case[/red]: {', '.join(missing)}")
        status = 1
    if full and not cells_met:
        console.print(
            f"[red]the scripted fuzz missed its targets[/red] (>= {SCRIPTED_CANCELLED_TARGET:,} "
            f"cases that cancelled, >= {CELL_TARGET} in every cell)"
        )
        status = 1
    return status


def _expected_categories(full: bool) -> list[str]:
    """Categories every run of the suite must report (the scripted fuzz's every cell)."""
    if not full:
        return []
    return [
        f"scripted {host}: {mechanism}, {POINT_NAMES[point]}"
        for host in SCRIPTED_HOSTS
        for mechanism, point in CANCELLING
    ]


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
