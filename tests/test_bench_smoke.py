"""Every benchmark runs in quick mode: this checks that they work and that every figure is
sound (all samples valid, no problem reported, a finite value), not whether it meets its
target."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The benchmarks run in their own environment (`make bench` builds it; `make test` too),
# which adds pydantic-ai and matplotlib to the dev environment.
BENCH_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
EVERY_FIGURE = {
    *("overhead", "streaming", "streaming-bounded", "scripted-cancel"),
    *("peer-overhead", "peer-streaming", "scale-memory", "scale-growth"),
    *("local-decode", "local-cancel-decode", "local-cancel-prefill"),
    *("local-ttft", "local-ttft-busy"),
    *("remote-chunks", "remote-cancel"),
    *("tools-overhead", "peer-tools", "tools-cancel", "approvals"),
    *("serve-events", "serve-stop"),
    *("otel", "otel-simple"),
    *("mcp-call", "mcp-cancel"),
    *("temporal-rate-1", "temporal-rate-2", "temporal-latency", "temporal-cancel"),
    *("temporal-approve", "temporal-replay"),
    *("resilience-limits", "resilience-fallback", "resilience-hedge", "resilience-limiter"),
    *("agents-subagent", "agents-cancel", "agents-peer"),
    *("guardrails-trip", "guardrails-trip-local", "guardrails-noop", "guardrails-partial"),
    *("evals-rate", "evals-memory", "evals-resume"),
    *("protocols-chunks", "protocols-stop-openai", "protocols-stop-mcp", "protocols-stop-a2a"),
}


def guide_constants() -> set[str]:
    """The figures guides/benchmarks.md's table marks ``(const)``."""
    rows = (ROOT / "guides" / "benchmarks.md").read_text().splitlines()
    return {row.split("`")[1] for row in rows if row.startswith("| `") and "(const)" in row}


def _refuse(constant: str) -> None:
    raise AssertionError(f"the benchmark JSON holds {constant}, not a number")


def assert_sound(figure: dict[str, Any]) -> None:
    """A figure that can be trusted whatever its value: finite values (strict JSON writes a
    non-finite one as null), a baseline above zero, every sample valid, no problem reported.
    A candidate may be zero or below: a difference such as tools-overhead is, within noise."""
    key, detail = figure["key"], figure["detail"]
    for name in ("candidate", "baseline", "ratio"):
        value = figure[name]
        assert isinstance(value, int | float), (key, name, value)  # null: not finite
        assert math.isfinite(value), (key, name, value)
    assert figure["baseline"] > 0, (key, figure["baseline"])
    assert not detail.get("problems"), (key, detail["problems"])
    assert not detail.get("invalid_reasons"), (key, detail["invalid_reasons"])
    assert detail.get("valid", 0) == detail.get("attempted", 0), (key, detail)
    if "workers_used" in detail:
        assert detail["workers_used"] == int(key.rsplit("-", 1)[1]), (key, detail)


def test_every_benchmark_runs_in_quick_mode(tmp_path: Path) -> None:
    assert BENCH_PYTHON.exists(), "no benchmark environment: run `make test` or `make bench`"
    out = tmp_path / "bench.json"
    charts = tmp_path / "charts"
    completed = subprocess.run(
        [str(BENCH_PYTHON), "-m", "bench", "--quick", "--json", str(out), "--charts", str(charts)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    # Strict JSON: Infinity or NaN would fail to parse here.
    data = json.loads(out.read_text(), parse_constant=_refuse)
    assert {r["key"] for r in data["results"]} == EVERY_FIGURE
    for r in data["results"]:
        assert_sound(r)
    # The guide's table marks exactly the figures whose baseline is a constant.
    constant = {r["key"] for r in data["results"] if r["baseline_kind"] == "constant"}
    assert constant == guide_constants()
    latencies = [r for r in data["results"] if "samples_ms" in r["detail"]]
    assert {r["key"] for r in latencies} == {
        "scripted-cancel",
        "local-cancel-decode",
        "local-cancel-prefill",
        "remote-cancel",
        "tools-cancel",
        "approvals",
        "serve-stop",
        "mcp-cancel",
        "temporal-latency",
        "temporal-cancel",
        "temporal-approve",
        "temporal-replay",
        "resilience-fallback",
        "agents-cancel",
        "guardrails-trip",
        "guardrails-trip-local",
        "protocols-stop-openai",
        "protocols-stop-mcp",
        "protocols-stop-a2a",
    }
    for chart in ("scale.png", "cancel_latency.png"):
        assert (charts / chart).read_bytes().startswith(b"\x89PNG")
    assert "PASS" in completed.stdout or "FAIL" in completed.stdout


def test_one_benchmark_or_group_runs_alone(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    completed = subprocess.run(
        [
            str(BENCH_PYTHON),
            *("-m", "bench", "--quick", "--only", "scripted-cancel", "--only", "peers"),
            *("--json", str(out), "--charts", str(tmp_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    keys = [r["key"] for r in json.loads(out.read_text())["results"]]
    assert keys == ["scripted-cancel", "peer-overhead", "peer-streaming"]
    assert (tmp_path / "cancel_latency.png").exists()
    assert not (tmp_path / "scale.png").exists()


CONFIRM = """
import sys
from rich.console import Console
from bench.__main__ import Mode, _confirm
from bench._harness import Comparison

def figure(ratio, invalid=()):
    return Comparison(key="scripted-cancel", name="x", unit="ms", candidate=ratio,
        baseline=1.0, ratio=ratio, target="<= 1.0x", passed=ratio <= 1.0 and not invalid,
        detail={"invalid_reasons": list(invalid), "valid": 3, "attempted": 3 + len(invalid)})

first, again = eval(sys.argv[1]), eval(sys.argv[2])
measured = []
def measure(result, mode):
    measured.append(result.key)
    return again
status = _confirm([first], Mode(quick=True, check=True), Console(width=200), measure=measure)
print("measured again:", measured)
sys.exit(status)
"""


@pytest.mark.parametrize(
    ("first", "again", "status", "verdict"),
    [
        ("figure(9.0)", "figure(9.0)", 1, "confirmed"),
        ("figure(9.0)", "figure(0.5)", 0, "not confirmed"),
        # An invalid sample is a miss whatever the ratio, in both measurements.
        ("figure(0.5, ['a token came first'])", "figure(0.5, ['a token came first'])", 1,
         "confirmed"),
        ("figure(0.5, ['a token came first'])", "figure(0.5)", 0, "not confirmed"),
        ("figure(0.5)", None, 0, None),  # a sound figure within its target: not measured again
    ],
)  # fmt: skip
def test_a_check_miss_is_measured_again_before_it_counts(
    first: str, again: str | None, status: int, verdict: str | None
) -> None:
    completed = subprocess.run(
        [str(BENCH_PYTHON), "-c", CONFIRM, first, again or "None"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = completed.stdout + completed.stderr
    assert completed.returncode == status, out
    if verdict is None:
        assert "measured again: []" in completed.stdout, out
        return
    assert "measured again: ['scripted-cancel']" in completed.stdout, out
    assert f"({verdict}," in completed.stdout, out
    assert ("missed its target twice" in completed.stdout) == (verdict == "confirmed"), out
