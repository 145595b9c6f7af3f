"""`agtl eval` as a user runs it: the bundled model on a small QA set with an LLM judge, a
kill and a resume, Ctrl-C, --max-cost, bad datasets, compare, and the HTML report in a
headless browser."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.local import rendered_dom
from tests.test_cli import AGTL, ROOT, agtl

FLOWS = "tests/evals_flows.py"
DEADLINE = 120


def _dataset(tmp_path: Path, n: int, name: str = "qa.jsonl") -> Path:
    countries = ["France", "Japan", "Italy", "Spain"]
    capitals = {"France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Spain": "Madrid"}
    path = tmp_path / name
    path.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"q{i}",
                    "input": f"What is the capital of {countries[i % 4]}?",
                    "expected": capitals[countries[i % 4]],
                }
            )
            + "\n"
            for i in range(n)
        )
    )
    return path


def _lines(path: Path) -> list[dict[str, Any]]:
    found = []
    for text in path.read_text().splitlines():
        try:
            found.append(json.loads(text))
        except ValueError:
            continue  # a line torn by a kill
    return found


def _wait_for_lines(path: Path, count: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if path.exists() and len(_lines(path)) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never had {count} lines")


def test_the_bundled_model_on_capitals_with_a_judge(tmp_path: Path) -> None:
    out, page = tmp_path / "run.jsonl", tmp_path / "report.html"
    done = agtl(
        "eval",
        "examples/evals/capitals.jsonl",
        "examples/evals/capitals.py:answer",
        *("--scorer", "exact", "--scorer", "contains"),
        *("--judge", "The answer names the same city as the reference answer."),
        *("--out", str(out), "--html", str(page)),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    lines = _lines(out)
    assert sorted(line["id"] for line in lines) == sorted(
        ["france", "japan", "italy", "spain", "germany", "egypt"]
    )
    for line in lines:
        assert line["status"] == "succeeded"
        assert set(line["scores"]) == {"exact", "contains", "llm_judge"}
        assert isinstance(line["scores"]["llm_judge"]["value"], bool)
        assert line["scores"]["llm_judge"]["reason"]
        assert line["llm_calls"] == 1  # the judge's calls are its own, not the workflow's
    france = next(line for line in lines if line["id"] == "france")
    assert france["scores"]["contains"]["value"] is True  # the bundled model knows this one
    assert "contains" in done.stdout
    assert "pass rate" in done.stdout
    assert "95% interval" in done.stdout

    dom = rendered_dom(page, tmp_path / "profile")
    assert "<h2>Scores</h2>" in dom
    for case in ("france", "japan", "egypt"):
        assert f"<td>{case}</td>" in dom
    assert "llm_judge" in dom


def test_a_killed_run_resumes_and_pays_only_for_what_was_not_finished(tmp_path: Path) -> None:
    dataset, out = _dataset(tmp_path, 40), tmp_path / "run.jsonl"
    process = subprocess.Popen(
        [*AGTL, "eval", str(dataset), f"{FLOWS}:answer", "--concurrency", "2", "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_lines(out, 5)
        process.send_signal(signal.SIGKILL)
        process.wait(DEADLINE)
    finally:
        process.kill()
    before = _lines(out)
    finished_before = {line["id"] for line in before if line["status"] == "succeeded"}
    assert 5 <= len(finished_before) < 40
    done = agtl(
        "eval", str(dataset), f"{FLOWS}:answer", "--out", str(out), "--resume", "--scorer", "exact"
    )
    assert done.returncode == 0, done.stderr
    after = _lines(out)
    runs = Counter(line["id"] for line in after)
    assert set(runs) == {f"q{i}" for i in range(40)}
    assert all(runs[case] == 1 for case in finished_before)  # none of them ran again
    assert len(after) == 40


def test_ctrl_c_cancels_the_running_cases_and_reports_what_finished(tmp_path: Path) -> None:
    dataset, out = _dataset(tmp_path, 20), tmp_path / "run.jsonl"
    process = subprocess.Popen(
        [*AGTL, "eval", str(dataset), f"{FLOWS}:slow", "--concurrency", "3", "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + DEADLINE
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # the first three are streaming
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=DEADLINE)
    finally:
        process.kill()
    assert process.returncode == 3, stderr
    lines = _lines(out)
    assert len(lines) == 3  # the running ones, kept; nothing else started
    for line in lines:
        assert line["status"] == "canceled"
        assert line["cancel_reason"] == "interrupted (Ctrl-C)"
        assert line["partial"].startswith("word ")
        assert float(line["cost"]) > 0  # what it had cost is kept
    assert "stopped: interrupted (Ctrl-C)" in stdout
    assert "canceled 3" in stdout


def test_max_cost_stops_the_run_and_names_the_budget(tmp_path: Path) -> None:
    dataset, out = _dataset(tmp_path, 30), tmp_path / "run.jsonl"
    done = agtl(
        "eval",
        str(dataset),
        f"{FLOWS}:answer",
        "--concurrency",
        "2",
        "--max-cost",
        "0.5",
        "--out",
        str(out),
    )
    assert done.returncode == 3, done.stderr
    assert "max_cost of 0.5 USD" in done.stdout
    assert len(_lines(out)) < 30


def test_a_bad_dataset_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "input": "x"}\n{"id": "a", "input": "y"}\n')
    done = agtl("eval", str(bad), f"{FLOWS}:answer")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[0] == (
        f"error: {bad}, line 2: a second case with id 'a' (first on line 1)"
    )
    missing = agtl("eval", str(tmp_path / "none.csv"), f"{FLOWS}:answer")
    assert missing.returncode == 2
    assert "none.csv: no such file" in missing.stderr
    scorer = agtl("eval", str(_dataset(tmp_path, 2)), f"{FLOWS}:answer", "--scorer", "nearly")
    assert scorer.returncode == 2
    assert "--scorer nearly" in scorer.stderr


def test_compare_says_a_known_regression_is_more_than_chance(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, 40)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for flow, out in (("answer", a), ("wrong_on_italy", b)):
        done = agtl(
            "eval",
            str(dataset),
            f"{FLOWS}:{flow}",
            "--scorer",
            "exact",
            "--out",
            str(out),
            "--concurrency",
            "16",
        )
        assert done.returncode == 0, done.stderr
    compared = agtl("eval", "compare", str(a), str(b))
    assert compared.returncode == 0, compared.stderr
    row = next(
        line for line in compared.stdout.splitlines() if "exact" in line and "McNemar" in line
    )
    assert "yes" in row  # B differs from A
    assert compared.stdout.count("worse: q") == 10  # every Italy case
    assert os.path.getsize(a) > 0
