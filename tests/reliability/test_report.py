"""The reliability report's verdict: ``python -m tests.reliability.report PATH``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.reliability.report import SCRIPTED_HOSTS
from tests.reliability.test_cancel_fuzz import CANCELLING, CELL_TARGET, POINT_NAMES

ROOT = Path(__file__).resolve().parents[2]


def _row(n: int, *, checked: int | None = None, landed: int | None = None) -> dict[str, float]:
    return {
        "ran": n,
        "checked": n if checked is None else checked,
        "landed": n if landed is None else landed,
        "distinct": n,
        "seconds": 0.5,
    }


def _full_run() -> dict[str, dict[str, float]]:
    """A full profile's categories where every scripted cell met its target."""
    return {
        f"scripted {host}: {mechanism}, {POINT_NAMES[point]}": _row(CELL_TARGET * 10)
        for host in SCRIPTED_HOSTS
        for mechanism, point in CANCELLING
    }


def _report(tmp_path: Path, categories: dict[str, dict[str, float]], *, quick: bool) -> str:
    path = tmp_path / "reliability.json"
    path.write_text(json.dumps({"quick": quick, "categories": categories}))
    completed = subprocess.run(
        [sys.executable, "-m", "tests.reliability.report", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return f"{completed.returncode}\n{completed.stdout}{completed.stderr}"


def test_a_full_run_that_met_every_target_passes(tmp_path: Path) -> None:
    out = _report(tmp_path, _full_run(), quick=False)
    assert out.startswith("0\n"), out
    assert "with evidence of landing" in out


def test_a_missing_cell_fails_the_report(tmp_path: Path) -> None:
    categories = _full_run()
    missing = next(iter(categories))
    del categories[missing]
    out = _report(tmp_path, categories, quick=False)
    assert out.startswith("1\n"), out
    assert "categories with no case" in out


def test_a_cell_short_of_landed_cancels_fails_the_report(tmp_path: Path) -> None:
    categories = _full_run()
    for host in SCRIPTED_HOSTS:
        mechanism, point = CANCELLING[0]
        categories[f"scripted {host}: {mechanism}, {POINT_NAMES[point]}"]["landed"] = 1
    out = _report(tmp_path, categories, quick=False)
    assert out.startswith("1\n"), out
    assert "missed its targets" in out


def test_a_case_started_and_never_checked_fails_the_report(tmp_path: Path) -> None:
    out = _report(tmp_path, {"crash: kill, mid-write": _row(3, checked=2)}, quick=True)
    assert out.startswith("1\n"), out
    assert "were not checked" in out


def test_an_empty_run_fails_the_report(tmp_path: Path) -> None:
    out = _report(tmp_path, {}, quick=True)
    assert out.startswith("1\n"), out
