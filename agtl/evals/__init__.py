"""agtl.evals: run a workflow over a dataset, score it, compare runs.

``await agtl.evals.run(dataset, workflow, provider, scorers=[...])`` runs every case as an
execution (a bounded number at once), scores what succeeded, and writes one JSON line per
finished case as it finishes. A stopped run (a cancel, ``max_cost``) keeps what its running
cases produced and cost; a resumed one runs only what was not finished. ``EvalReport`` reads a
run back (scores with 95% intervals, cost, latency, the cases); ``compare`` says whether a
second run differs from a first. ``agtl eval`` is the command line for all of it.
"""

from agtl.evals._dataset import Case, Dataset, DatasetError
from agtl.evals._report import (
    CaseRow,
    Change,
    Comparison,
    EvalReport,
    ScorerComparison,
    ScorerStats,
    compare,
    to_html,
)
from agtl.evals._running import EvalRun, Progress, finished_keys, run
from agtl.evals._scoring import (
    Judged,
    Score,
    Scorer,
    contains,
    exact,
    json_schema,
    llm_judge,
    regex,
    resolve,
    scorer,
)

__all__ = [
    "Case",
    "CaseRow",
    "Change",
    "Comparison",
    "Dataset",
    "DatasetError",
    "EvalReport",
    "EvalRun",
    "Judged",
    "Progress",
    "Score",
    "Scorer",
    "ScorerComparison",
    "ScorerStats",
    "compare",
    "contains",
    "exact",
    "finished_keys",
    "json_schema",
    "llm_judge",
    "regex",
    "resolve",
    "run",
    "scorer",
    "to_html",
]
