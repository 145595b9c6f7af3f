"""The benchmarks run (quick mode): this checks that they work, not their figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_benchmark_runs_in_quick_mode(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    data = json.loads(out.read_text())
    names = [r["name"] for r in data["results"]]
    assert len(names) == 9
    assert all(r["candidate"] > 0 and r["baseline"] > 0 for r in data["results"])
    assert "ratio" in completed.stdout
