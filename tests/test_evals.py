"""agtl.evals on the scripted provider: datasets and their mistakes, scorers, a bounded run
that writes a line per finished case, resume, max_cost, a cancel that keeps what ran, the
report's figures, and two runs compared."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio

import agtl
from agtl import Session, evals
from agtl.testing import Reply, ScriptedProvider

CAPITALS = {"france": "Paris", "japan": "Tokyo", "italy": "Rome", "spain": "Madrid"}


def _cases(n: int = 4) -> list[evals.Case]:
    names = list(CAPITALS)
    return [
        evals.Case(f"c{i}", f"capital of {names[i % 4]}?", CAPITALS[names[i % 4]]) for i in range(n)
    ]


def _answers(wrong: set[str] = frozenset(), delay: float = 0.01) -> ScriptedProvider:  # type: ignore[assignment]
    """Answers with the capital the question asks for (or "Lyon" for a country in ``wrong``)."""

    def respond(request: agtl.GenerationRequest) -> Reply:
        question = request.messages[-1].content or ""
        country = question.removeprefix("capital of ").removesuffix("?")
        return Reply("Lyon" if country in wrong else CAPITALS[country], delay=delay)

    return ScriptedProvider(respond=respond)


async def ask(session: Session, question: str) -> str:
    return (await session.generate_text(prompt=question)).text


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- datasets -----------------------------------------------------------------------------------
def test_a_dataset_loads_from_jsonl_csv_and_yaml(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(
        '{"id": "a", "input": "q1", "expected": "x"}\n\n{"id": 2, "input": {"q": 2}}\n'
    )
    (tmp_path / "a.csv").write_text("id,input,expected,topic\na,q1,x,geo\nb,q2,,art\n")
    (tmp_path / "a.yaml").write_text(
        "cases:\n  - id: a\n    input: q1\n    expected: x\n  - id: b\n    input: [1, 2]\n"
    )
    jsonl = evals.Dataset.load(tmp_path / "a.jsonl")
    assert [(c.id, c.input, c.expected) for c in jsonl] == [("a", "q1", "x"), ("2", {"q": 2}, None)]
    csv_cases = evals.Dataset.load(tmp_path / "a.csv")
    assert csv_cases.cases[0] == evals.Case("a", "q1", "x", {"topic": "geo"})
    assert csv_cases.cases[1].expected is None
    yaml_cases = evals.Dataset.load(tmp_path / "a.yaml")
    assert [c.input for c in yaml_cases] == ["q1", [1, 2]]
    assert yaml_cases.name == "a"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.jsonl", '{"id": "a", "input": 1}\n{"id": "a"\n', "bad.jsonl, line 2: not JSON"),
        (
            "dup.jsonl",
            '{"id": "a", "input": 1}\n{"id": "a", "input": 2}\n',
            "dup.jsonl, line 2: a second case with id 'a' (first on line 1)",
        ),
        ("noinput.jsonl", '{"id": "a"}\n', "noinput.jsonl, line 1: case 'a' has no 'input'"),
        ("noid.jsonl", '{"input": 1}\n', "noid.jsonl, line 1: the case has no 'id'"),
        (
            "keys.jsonl",
            '{"id": 1, "input": 1, "answer": 2}\n',
            "keys.jsonl, line 1: unknown keys ['answer']",
        ),
        ("list.jsonl", "[1, 2]\n", "list.jsonl, line 1: a case must be an object, not list"),
        ("bad.csv", "name,input\na,b\n", "bad.csv, line 1: the header has no 'id' column"),
        ("bad.yaml", "- id: a\n  input: [1\n", "bad.yaml, line 3: not YAML"),
        (
            "late.yaml",
            "- id: a\n  input: 1\n- id: b\n",
            "late.yaml, line 3: case 'b' has no 'input'",
        ),
        ("empty.jsonl", "\n", "empty.jsonl: no cases in the file"),
        ("cases.txt", "x", "cases.txt: not a dataset: use .jsonl, .csv or .yaml"),
    ],
)
def test_a_bad_dataset_is_one_line_saying_where_and_what(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(evals.DatasetError) as caught:
        evals.Dataset.load(tmp_path / name)
    assert str(caught.value).startswith(f"{tmp_path / name}{message[len(name) :]}")


# -- scorers ------------------------------------------------------------------------------------
async def test_the_built_in_scorers() -> None:
    case = evals.Case("a", "q", "Paris")
    result: Any = None
    provider = ScriptedProvider(Reply("x"))
    assert (await evals.exact()(case, " Paris\n", result, provider)).score.value is True
    assert (await evals.exact()(case, "paris", result, provider)).score.value is False
    assert (await evals.contains()(case, "It is PARIS.", result, provider)).score.value is True
    listed = evals.Case("b", "q", ["Paris", "Seine"])
    judged = await evals.contains()(listed, "Paris", result, provider)
    assert judged.score == evals.Score(False, "missing ['Seine']")
    assert (await evals.regex(r"^P\w+s$")(case, "Paris", result, provider)).score.value is True
    schema = evals.json_schema(dict[str, int])
    assert (await schema(case, '{"a": 1}', result, provider)).score.value is True
    assert (await schema(case, '{"a": "x"}', result, provider)).score.value is False


async def test_a_scorer_that_raises_or_returns_nonsense_fails_the_case_saying_why() -> None:
    def boom(case: evals.Case, output: Any, result: Any) -> bool:
        raise RuntimeError("no")

    def odd(case: evals.Case, output: Any, result: Any) -> str:
        return "yes"

    case, provider = evals.Case("a", "q"), ScriptedProvider(Reply("x"))
    raised = await evals.scorer(boom)(case, "x", None, provider)
    assert raised.score == evals.Score(False, "the scorer raised RuntimeError: no")
    nonsense = await evals.scorer(odd)(case, "x", None, provider)
    assert nonsense.score.value is False
    assert "returns a Score, a bool or a number, not str" in (nonsense.score.reason or "")


def test_resolve_names_a_built_in_or_a_module_function() -> None:
    assert evals.resolve("contains").name == "contains"
    found = evals.resolve("examples/evals/capitals.py:short")
    assert found.name == "short"
    with pytest.raises(agtl.InvalidArgumentError, match="'nearly' is not a built-in scorer"):
        evals.resolve("nearly")


# -- runs ---------------------------------------------------------------------------------------
async def test_a_run_scores_every_case_and_writes_a_line_as_each_finishes(
    tmp_path: Path, autojump_clock: Any
) -> None:
    out = tmp_path / "run.jsonl"
    seen: list[evals.Progress] = []
    finished = await evals.run(
        _cases(8),
        ask,
        _answers(wrong={"italy"}),
        scorers=[evals.exact(), evals.contains()],
        concurrency=3,
        out=out,
        on_progress=seen.append,
    )
    assert finished.stopped is None
    assert finished.progress.succeeded == 8
    assert max(p.running for p in seen) == 3  # never more at once than the concurrency
    lines = _lines(out)
    assert sorted(line["id"] for line in lines) == [f"c{i}" for i in range(8)]
    line = next(line for line in lines if line["id"] == "c2")  # italy: wrong
    assert line["scores"]["exact"] == {"value": False, "reason": "expected 'Rome'"}
    assert line["output"] == "Lyon"
    assert line["result"]["status"] == "succeeded"
    assert line["llm_calls"] == 1
    report = evals.EvalReport.read(out)
    [contains, exact] = report.scorers
    assert (contains.name, contains.value) == ("contains", 0.75)
    assert (exact.name, exact.kind, exact.value, exact.n) == ("exact", "pass rate", 0.75, 8)
    assert exact.low <= 0.75 <= exact.high
    assert report.by_status == {"succeeded": 8, "failed": 0, "canceled": 0}


async def test_repeat_runs_each_case_again_with_its_number(
    tmp_path: Path, autojump_clock: Any
) -> None:
    out = tmp_path / "run.jsonl"
    await evals.run(_cases(2), ask, _answers(), repeat=3, out=out)
    assert sorted((line["id"], line["repeat"]) for line in _lines(out)) == [
        (c, r) for c in ("c0", "c1") for r in range(3)
    ]


async def test_a_resumed_run_runs_only_what_was_not_finished(
    tmp_path: Path, autojump_clock: Any
) -> None:
    out = tmp_path / "run.jsonl"
    provider = _answers()
    first = await evals.run(_cases(4)[:2], ask, provider, out=out)
    assert first.progress.succeeded == 2
    with out.open("a") as handle:
        handle.write('{"id": "c2", "repeat": 0, "status": "succ')  # a line torn by a kill
    again = await evals.run(_cases(4), ask, provider, out=out, resume=True)
    assert again.progress.skipped == 2
    assert again.progress.succeeded == 2  # c2 (torn) and c3 ran; c0 and c1 did not
    report = evals.EvalReport.read(out)
    assert report.skipped_lines == 1
    assert sorted(row.id for row in report.cases) == ["c0", "c1", "c2", "c3"]
    with pytest.raises(agtl.InvalidArgumentError, match="exists: pass resume=True"):
        await evals.run(_cases(4), ask, provider, out=out)


async def test_max_cost_stops_starting_cases_and_cancels_the_running_ones(
    tmp_path: Path, autojump_clock: Any
) -> None:
    pace = {"france": 0.01, "japan": 0.013, "italy": 0.017, "spain": 0.019}

    def respond(request: agtl.GenerationRequest) -> Reply:
        country = (request.messages[-1].content or "").removeprefix("capital of ").rstrip("?")
        return Reply(["word "] * 50, delay=pace[country])  # cases end at different times

    priced = ScriptedProvider(respond=respond)
    priced = priced.with_pricing({"scripted-model": agtl.Price("100000", "100000")})
    out = tmp_path / "run.jsonl"
    finished = await evals.run(_cases(40), ask, priced, concurrency=4, max_cost="20", out=out)
    assert finished.stopped is not None
    assert "max_cost of 20 USD" in finished.stopped
    lines = _lines(out)
    assert len(lines) < 40  # it stopped starting cases
    canceled = [line for line in lines if line["status"] == "canceled"]
    assert canceled  # the running ones were stopped, and kept
    assert all(line["cost"] is not None for line in lines)
    assert all(
        "max_cost" in (line["cancel_reason"] or "") or "limit" in (line["cancel_reason"] or "")
        for line in canceled
    )


async def test_a_cancel_stops_the_run_and_keeps_the_running_cases(
    tmp_path: Path, autojump_clock: Any
) -> None:
    slow = ScriptedProvider(respond=lambda request: Reply(["word "] * 100, delay=0.1))
    stop = agtl.CancelSignal()
    out = tmp_path / "run.jsonl"

    async def press_ctrl_c() -> None:
        await trio.sleep(2.05)
        stop.cancel("interrupted (Ctrl-C)")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(press_ctrl_c)
        finished = await evals.run(_cases(10), ask, slow, concurrency=2, cancel=stop, out=out)
    assert finished.stopped == "interrupted (Ctrl-C)"
    lines = _lines(out)
    assert len(lines) == 2  # the two running ones; nothing else started
    for line in lines:
        assert line["status"] == "canceled"
        assert line["cancel_reason"] == "interrupted (Ctrl-C)"
        assert line["partial"].startswith("word word")
        assert line["output_tokens"] >= 20


async def test_a_streaming_workflow_and_an_in_memory_run(autojump_clock: Any) -> None:
    async def stream(session: Session, question: str) -> Any:
        text = (await session.generate_text(prompt=question)).text
        yield await session.done(text)

    finished = await evals.run(_cases(2), stream, _answers(), scorers=[evals.exact()])
    report = evals.EvalReport.of_run(finished)
    assert [s.value for s in report.scorers] == [1.0]
    assert report.source == "(in memory)"


async def test_an_llm_judge_runs_apart_and_its_cost_is_kept_apart(
    tmp_path: Path, autojump_clock: Any
) -> None:
    def respond(request: agtl.GenerationRequest) -> Reply:
        if "grade an answer" in (request.messages[-1].content or ""):
            return Reply('{"reason": "right city", "passed": true}')
        return Reply("Paris")

    provider = ScriptedProvider(respond=respond).with_pricing(
        {"scripted-model": agtl.Price("1", "1")}
    )
    out = tmp_path / "run.jsonl"
    await evals.run(
        [evals.Case("a", "capital of france?", "Paris")],
        ask,
        provider,
        scorers=[evals.llm_judge("names the right city")],
        out=out,
    )
    [line] = _lines(out)
    assert line["scores"]["llm_judge"] == {"value": True, "reason": "right city"}
    assert Decimal(line["judge_cost"]) > 0
    assert line["llm_calls"] == 1  # the judge's call is not the workflow's


def test_bad_run_arguments_say_what_is_wrong() -> None:
    async def check() -> None:
        provider = _answers()
        with pytest.raises(agtl.InvalidArgumentError, match="concurrency"):
            await evals.run(_cases(), ask, provider, concurrency=0)
        with pytest.raises(agtl.InvalidArgumentError, match="resume: needs out="):
            await evals.run(_cases(), ask, provider, resume=True)
        with pytest.raises(agtl.InvalidArgumentError, match="max_cost: must be > 0"):
            await evals.run(_cases(), ask, provider, max_cost=0)
        with pytest.raises(agtl.InvalidArgumentError, match="two scorers have the same name"):
            await evals.run(_cases(), ask, provider, scorers=[evals.exact(), evals.exact()])

    trio.run(check)


# -- comparing runs -----------------------------------------------------------------------------
async def test_compare_finds_a_known_regression(tmp_path: Path, autojump_clock: Any) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    cases = _cases(40)
    await evals.run(cases, ask, _answers(), scorers=[evals.exact()], out=a)
    await evals.run(cases, ask, _answers(wrong={"italy"}), scorers=[evals.exact()], out=b)
    result = evals.compare(evals.EvalReport.read(a), evals.EvalReport.read(b))
    [exact] = result.scorers
    assert exact.pairs == 40
    assert (exact.mean_a, exact.mean_b) == (1.0, 0.75)
    assert len(exact.regressions) == 10
    assert not exact.improvements
    assert exact.test == "McNemar (exact)"
    assert exact.p_value == pytest.approx(2 / 2**10)
    assert exact.differs
    same = evals.compare(evals.EvalReport.read(a), evals.EvalReport.read(a))
    assert not same.scorers[0].differs
    assert same.scorers[0].p_value == 1.0


def test_the_html_report_has_every_case_and_no_script(tmp_path: Path) -> None:
    lines: list[dict[str, Any]] = [
        {
            "id": "a",
            "status": "succeeded",
            "input": "<q>",
            "output": "x",
            "scores": {"exact": {"value": True, "reason": None}},
            "duration": 0.5,
            "cost": "0.01",
        },
        {
            "id": "b",
            "status": "canceled",
            "input": "q",
            "output": None,
            "scores": {},
            "duration": 1.5,
            "cost": "0.02",
            "cancel_reason": "interrupted",
        },
    ]
    page = evals.to_html(evals.EvalReport.of(lines, source="run.jsonl"))
    assert "<script" not in page
    assert "&lt;q&gt;" in page  # escaped
    assert "interrupted" in page
    assert "pass rate" in page
