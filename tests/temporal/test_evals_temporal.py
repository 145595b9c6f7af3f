"""`agtl eval --temporal`: every case a Temporal execution, run by two `agtl worker`
processes; a second run of the same results file starts nothing again."""

from __future__ import annotations

import json
from pathlib import Path

from tests.temporal.conftest import Workers
from tests.test_cli import agtl
from tests.test_evals_cli import _dataset, _lines


def _executions(summaries: Path) -> int:
    if not summaries.exists():
        return 0
    return sum(1 for line in summaries.read_text().splitlines() if line.strip())


def test_eval_on_two_workers_never_runs_a_finished_case_twice(
    workers: Workers, tmp_path: Path
) -> None:
    for name in ("one", "two"):
        workers.start(concurrency=4, env={"AGTL_TEST_WORKER": name})
    dataset, out = _dataset(tmp_path, 24), tmp_path / "run.jsonl"
    command = (
        *("eval", str(dataset), "tests/evals_flows.py:answer"),
        *("--temporal", workers.address, "--task-queue", workers.task_queue),
        *("--worker-provider", "tests.evals_flows:worker_provider"),
        *("--scorer", "exact", "--concurrency", "8", "--out", str(out)),
    )
    done = agtl(*command, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = _lines(out)
    assert len(lines) == 24
    assert all(line["status"] == "succeeded" for line in lines)
    assert all(line["scores"]["exact"]["value"] is True for line in lines)
    models = {line["result"]["summary"]["llm_calls"][0]["model"] for line in lines}
    assert models == {"one", "two"}  # both workers ran cases
    summaries = workers.directory / "summaries.jsonl"
    ran = _executions(summaries)
    assert ran == 24

    # The same run again (its file gone, its workflow ids the same): Temporal hands back
    # the finished executions, and no case runs a second time.
    out.unlink()
    again = agtl(*command, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(_lines(out)) == 24
    assert _executions(summaries) == ran
    assert json.loads(out.read_text().splitlines()[0])["status"] == "succeeded"
