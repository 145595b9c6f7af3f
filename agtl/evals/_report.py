"""Reading a run back: aggregates with their uncertainty, the cases, and two runs compared.

:class:`EvalReport` reads a results file (the last line of each case and repeat counts; a
line torn by a crash is skipped and counted) and gives, per scorer, the mean or pass rate
with a 95% bootstrap interval, the counts by status, cost, tokens, latency and time to first
token percentiles, and the slowest and most expensive cases. :func:`compare` pairs two runs'
cases and says, per scorer, which got worse or better and whether the difference is more
than chance: McNemar's exact test for pass/fail scores, a paired bootstrap for numbers.
:func:`to_html` writes the report as one self-contained page (no script, no network).
"""

from __future__ import annotations

import html
import json
import math
import os
import random
import statistics
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import attrs

from agtl.evals._running import EvalRun

__all__ = [
    "CaseRow",
    "Change",
    "Comparison",
    "EvalReport",
    "ScorerComparison",
    "ScorerStats",
    "compare",
    "to_html",
]

RESAMPLES: Final = 2000
#: How many cases the slowest and most expensive lists hold.
TOP: Final = 5


@attrs.frozen
class CaseRow:
    """One case of a run, as the report shows it."""

    id: str
    repeat: int
    status: str
    input: Any
    expected: Any
    output: Any
    scores: Mapping[str, Mapping[str, Any]]
    cost: Decimal | None
    judge_cost: Decimal | None
    input_tokens: int | None
    output_tokens: int | None
    duration: float
    ttft: float | None
    llm_calls: int
    tool_calls: int
    cancel_reason: str | None
    error: str | None

    @property
    def key(self) -> tuple[str, int]:
        return (self.id, self.repeat)

    @classmethod
    def of(cls, line: Mapping[str, Any]) -> CaseRow:
        return cls(
            id=str(line["id"]),
            repeat=int(line.get("repeat", 0)),
            status=str(line["status"]),
            input=line.get("input"),
            expected=line.get("expected"),
            output=line.get("output"),
            scores=line.get("scores") or {},
            cost=_decimal(line.get("cost")),
            judge_cost=_decimal(line.get("judge_cost")),
            input_tokens=line.get("input_tokens"),
            output_tokens=line.get("output_tokens"),
            duration=float(line.get("duration") or 0.0),
            ttft=line.get("ttft"),
            llm_calls=int(line.get("llm_calls") or 0),
            tool_calls=int(line.get("tool_calls") or 0),
            cancel_reason=line.get("cancel_reason"),
            error=line.get("error"),
        )


@attrs.frozen
class ScorerStats:
    """One scorer over a run: ``kind`` "pass rate" (bool scores) or "mean", its value and
    95% bootstrap interval, over ``n`` scored cases."""

    name: str
    kind: str
    value: float
    low: float
    high: float
    n: int


@attrs.frozen
class EvalReport:
    """What a run did, read back from its lines."""

    source: str
    cases: tuple[CaseRow, ...]
    scorers: tuple[ScorerStats, ...]
    skipped_lines: int = 0

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> EvalReport:
        """The report of a results file."""
        lines: list[dict[str, Any]] = []
        skipped = 0
        with Path(path).open("rb") as handle:
            for raw in handle:
                if not raw.strip():
                    continue
                try:
                    line = json.loads(raw)
                except ValueError:
                    skipped += 1
                    continue
                if not isinstance(line, dict) or "id" not in line or "status" not in line:
                    skipped += 1
                    continue
                line.pop("result", None)  # the whole Result is for other readers
                lines.append(line)
        return cls.of(lines, source=str(path), skipped=skipped)

    @classmethod
    def of_run(cls, run: EvalRun) -> EvalReport:
        """The report of a finished run (its file, or the lines it kept)."""
        if run.path is not None:
            return cls.read(run.path)
        return cls.of(run.lines, source="(in memory)")

    @classmethod
    def of(cls, lines: Iterable[Mapping[str, Any]], *, source: str, skipped: int = 0) -> EvalReport:
        latest: dict[tuple[str, int], CaseRow] = {}
        for line in lines:
            row = CaseRow.of(line)
            latest[row.key] = row  # a case run again (after a resume) counts once: the last
        cases = tuple(latest.values())
        names = sorted({name for row in cases for name in row.scores})
        stats = tuple(_stats(name, [r for r in cases if name in r.scores]) for name in names)
        return cls(source, cases, stats, skipped)

    # -- aggregates -----------------------------------------------------------------------------
    @property
    def by_status(self) -> dict[str, int]:
        counts = {"succeeded": 0, "failed": 0, "canceled": 0}
        for row in self.cases:
            counts[row.status] = counts.get(row.status, 0) + 1
        return counts

    @property
    def cost(self) -> Decimal | None:
        """The workflows' cost (``None`` if any case's is unknown)."""
        return _sum(row.cost for row in self.cases)

    @property
    def judge_cost(self) -> Decimal | None:
        """What the scorers' own model calls cost, apart from the workflows'."""
        return _sum(row.judge_cost for row in self.cases)

    @property
    def tokens(self) -> tuple[int, int]:
        """Input and output tokens over every case (unknown figures count as 0)."""
        return (
            sum(row.input_tokens or 0 for row in self.cases),
            sum(row.output_tokens or 0 for row in self.cases),
        )

    def latency(self) -> dict[str, float | None]:
        """p50 and p95 of the cases' durations and times to first token, in seconds."""
        durations = [row.duration for row in self.cases]
        ttfts = [row.ttft for row in self.cases if row.ttft is not None]
        return {
            "p50": _percentile(durations, 0.50),
            "p95": _percentile(durations, 0.95),
            "ttft_p50": _percentile(ttfts, 0.50),
            "ttft_p95": _percentile(ttfts, 0.95),
        }

    @property
    def slowest(self) -> tuple[CaseRow, ...]:
        return tuple(sorted(self.cases, key=lambda r: r.duration, reverse=True)[:TOP])

    @property
    def most_expensive(self) -> tuple[CaseRow, ...]:
        priced = [row for row in self.cases if row.cost]
        return tuple(sorted(priced, key=lambda r: r.cost or 0, reverse=True)[:TOP])


def _stats(name: str, rows: Sequence[CaseRow]) -> ScorerStats:
    values = [row.scores[name]["value"] for row in rows]
    passes = all(isinstance(v, bool) for v in values)
    numbers = [float(v) for v in values]
    mean = statistics.fmean(numbers) if numbers else math.nan
    low, high = _interval(numbers)
    return ScorerStats(name, "pass rate" if passes else "mean", mean, low, high, len(numbers))


def _interval(values: Sequence[float]) -> tuple[float, float]:
    """A 95% percentile bootstrap interval of the mean (seeded: the same file, the same
    interval)."""
    if not values:
        return math.nan, math.nan
    if len(values) == 1:
        return values[0], values[0]
    rng = random.Random(0)
    n = len(values)
    means = sorted(statistics.fmean(rng.choices(values, k=n)) for _ in range(RESAMPLES))
    return means[int(0.025 * RESAMPLES)], means[int(0.975 * RESAMPLES) - 1]


# -- two runs ---------------------------------------------------------------------------------
@attrs.frozen
class Change:
    """A case whose score moved from run A to run B."""

    id: str
    repeat: int
    scorer: str
    before: float | bool
    after: float | bool


@attrs.frozen
class ScorerComparison:
    """One scorer in A and B over the cases both scored: the means, the test used, its
    p-value, and whether B differs from A (p < 0.05)."""

    name: str
    pairs: int
    mean_a: float
    mean_b: float
    test: str
    p_value: float
    differs: bool
    regressions: tuple[Change, ...]
    improvements: tuple[Change, ...]


@attrs.frozen
class Comparison:
    """Run B against run A, per scorer; cases only one of them has are counted apart."""

    a: str
    b: str
    scorers: tuple[ScorerComparison, ...]
    only_in_a: int
    only_in_b: int


def compare(a: EvalReport, b: EvalReport) -> Comparison:
    """B against A: per scorer, the paired cases' regressions and improvements, and a paired
    test (McNemar's exact test for pass/fail, a paired bootstrap of the mean difference for
    numbers)."""
    rows_a = {row.key: row for row in a.cases}
    rows_b = {row.key: row for row in b.cases}
    both = [key for key in rows_a if key in rows_b]
    names = sorted({n for r in a.cases for n in r.scores} | {n for r in b.cases for n in r.scores})
    results = []
    for name in names:
        pairs = [
            (key, rows_a[key].scores[name]["value"], rows_b[key].scores[name]["value"])
            for key in both
            if name in rows_a[key].scores and name in rows_b[key].scores
        ]
        regressions = tuple(
            Change(key[0], key[1], name, before, after)
            for key, before, after in pairs
            if float(after) < float(before)
        )
        improvements = tuple(
            Change(key[0], key[1], name, before, after)
            for key, before, after in pairs
            if float(after) > float(before)
        )
        booleans = all(isinstance(x, bool) and isinstance(y, bool) for _, x, y in pairs)
        if booleans:
            test, p = "McNemar (exact)", _mcnemar(len(regressions), len(improvements))
        else:
            test, p = (
                "paired bootstrap",
                _paired_bootstrap([float(y) - float(x) for _, x, y in pairs]),
            )
        mean_a = statistics.fmean(float(x) for _, x, _ in pairs) if pairs else math.nan
        mean_b = statistics.fmean(float(y) for _, _, y in pairs) if pairs else math.nan
        results.append(
            ScorerComparison(
                name, len(pairs), mean_a, mean_b, test, p, p < 0.05, regressions, improvements
            )
        )
    return Comparison(
        a.source,
        b.source,
        tuple(results),
        sum(1 for key in rows_a if key not in rows_b),
        sum(1 for key in rows_b if key not in rows_a),
    )


def _mcnemar(worse: int, better: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs (a binomial test at 1/2)."""
    n = worse + better
    if n == 0:
        return 1.0
    k = min(worse, better)
    tail: float = sum(math.comb(n, i) for i in range(k + 1)) / (1 << n)
    return min(1.0, 2 * tail)


def _paired_bootstrap(differences: Sequence[float]) -> float:
    """Two-sided p-value that the mean paired difference is 0, by bootstrap: twice the share
    of resampled means on the far side of 0 (seeded)."""
    if not differences or all(d == 0 for d in differences):
        return 1.0
    rng = random.Random(0)
    n = len(differences)
    observed = statistics.fmean(differences)
    means = [statistics.fmean(rng.choices(differences, k=n)) for _ in range(RESAMPLES)]
    beyond = sum(1 for m in means if (m <= 0 if observed > 0 else m >= 0))
    return min(1.0, 2 * (beyond + 1) / (RESAMPLES + 1))


# -- the page ---------------------------------------------------------------------------------
_STYLE: Final = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f3f3f3}.num{text-align:right}
.failed{color:#b00}.canceled{color:#a60}.succeeded{color:#070}pre{margin:0;white-space:pre-wrap;
max-width:40em}
"""


def to_html(report: EvalReport) -> str:
    """The report as one self-contained page: aggregates, then every case."""
    e = html.escape
    latency = report.latency()
    rows = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>agtl eval: {e(report.source)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>agtl eval</h1><p>{e(report.source)}: {len(report.cases)} cases</p>",
        "<h2>Scores</h2><table><tr><th>scorer</th><th>kind</th><th>value</th>"
        "<th>95% interval</th><th>cases</th></tr>",
    ]
    for stat in report.scorers:
        rows.append(
            f"<tr><td>{e(stat.name)}</td><td>{stat.kind}</td><td class='num'>{stat.value:.3f}"
            f"</td><td class='num'>[{stat.low:.3f}, {stat.high:.3f}]</td>"
            f"<td class='num'>{stat.n}</td></tr>"
        )
    rows.append("</table><h2>Run</h2><table>")
    tokens_in, tokens_out = report.tokens
    facts = {
        **{f"cases {k}": str(v) for k, v in report.by_status.items()},
        "cost (workflows)": _money(report.cost),
        "cost (scorers)": _money(report.judge_cost),
        "tokens in / out": f"{tokens_in:,} / {tokens_out:,}",
        "duration p50 / p95": f"{_seconds(latency['p50'])} / {_seconds(latency['p95'])}",
        "time to first token p50 / p95": (
            f"{_seconds(latency['ttft_p50'])} / {_seconds(latency['ttft_p95'])}"
        ),
    }
    rows.extend(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts.items())
    rows.append("</table>")
    for title, chosen in (("Slowest", report.slowest), ("Most expensive", report.most_expensive)):
        if chosen:
            listed = ", ".join(
                f"{e(r.id)} ({_seconds(r.duration)}, {_money(r.cost)})" for r in chosen
            )
            rows.append(f"<p><b>{title}:</b> {listed}</p>")
    names = [stat.name for stat in report.scorers]
    rows.append(
        "<h2>Cases</h2><table><tr><th>id</th><th>status</th><th>input</th><th>output</th>"
        "<th>expected</th>"
        + "".join(f"<th>{e(n)}</th>" for n in names)
        + "<th>steps / tools</th><th>cost</th><th>why it stopped</th></tr>"
    )
    for row in sorted(report.cases, key=lambda r: r.key):
        label = row.id if row.repeat == 0 else f"{row.id} #{row.repeat}"
        cells = "".join(f"<td>{_score_cell(row.scores.get(n))}</td>" for n in names)
        why = row.cancel_reason or row.error or ""
        rows.append(
            f"<tr><td>{e(label)}</td><td class='{e(row.status)}'>{e(row.status)}</td>"
            f"<td><pre>{e(_short(row.input))}</pre></td><td><pre>{e(_short(row.output))}</pre></td>"
            f"<td><pre>{e(_short(row.expected))}</pre></td>{cells}"
            f"<td class='num'>{row.llm_calls} / {row.tool_calls}</td>"
            f"<td class='num'>{_money(row.cost)}</td><td>{e(why)}</td></tr>"
        )
    rows.append("</table></body></html>")
    return "\n".join(rows)


def _score_cell(score: Mapping[str, Any] | None) -> str:
    if score is None:
        return ""
    value = score["value"]
    shown = ("pass" if value else "fail") if isinstance(value, bool) else f"{float(value):.3f}"
    reason = score.get("reason")
    return html.escape(shown if not reason else f"{shown}: {reason}")


def _short(value: Any, limit: int = 400) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _money(value: Decimal | None) -> str:
    return "unknown" if value is None else f"${value:.6f}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))])


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _sum(values: Iterable[Decimal | None]) -> Decimal | None:
    total = Decimal(0)
    for value in values:
        if value is None:
            return None
        total += value
    return total
