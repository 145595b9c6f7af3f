"""Scores and scorers: how well one case's output did.

A scorer is any ``scorer(case, output, result)`` (sync or async) returning a :class:`Score`,
a ``bool`` (pass/fail) or a number. :func:`scorer` names one; the built-ins are
:func:`exact`, :func:`contains`, :func:`regex`, :func:`json_schema` and :func:`llm_judge`,
whose model calls run as an execution of their own, so their cost is kept apart from the
workflow's.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

import attrs
import pydantic

from agtl._entry import load_object
from agtl.errors import InvalidArgumentError
from agtl.evals._dataset import Case
from agtl.provider import Provider
from agtl.result import Result
from agtl.validation import check_str, type_name

__all__ = [
    "BUILT_IN",
    "Judged",
    "Score",
    "Scorer",
    "contains",
    "exact",
    "json_schema",
    "llm_judge",
    "regex",
    "resolve",
    "scorer",
]


@attrs.frozen
class Score:
    """A case's score by one scorer: ``value`` (``True``/``False`` for pass/fail, or a
    number, usually 0..1) and why, if the scorer said."""

    value: float | bool
    reason: str | None = None

    @classmethod
    def of(cls, returned: Any, name: str) -> Score:
        """What a scorer returned, as a Score (a bool or a number is its value)."""
        if isinstance(returned, Score):
            return returned
        if isinstance(returned, bool | int | float):
            return cls(returned if isinstance(returned, bool) else float(returned))
        raise InvalidArgumentError(
            name, f"a scorer returns a Score, a bool or a number, not {type_name(returned)}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "reason": self.reason}


@attrs.frozen
class Judged:
    """A score and what computing it cost (an LLM judge's own execution)."""

    score: Score
    cost: Decimal | None = Decimal(0)
    tokens: int = 0


@attrs.frozen(eq=False)
class Scorer:
    """A named scorer; ``function(case, output, result)``, sync or async."""

    name: str
    function: Callable[..., Any] = attrs.field(repr=False)
    #: Whether the function takes the run's provider too (an LLM judge without its own).
    takes_provider: bool = attrs.field(default=False, repr=False)

    async def __call__(
        self, case: Case, output: Any, result: Result[Any], provider: Provider
    ) -> Judged:
        """The score of one case (a scorer that raises scores it as failed, saying why)."""
        try:
            extra = (provider,) if self.takes_provider else ()
            returned = self.function(case, output, result, *extra)
            if inspect.isawaitable(returned):
                returned = await returned
        except Exception as exc:
            return Judged(Score(False, f"the scorer raised {type(exc).__name__}: {exc}"))
        if isinstance(returned, Judged):
            return returned
        try:
            return Judged(Score.of(returned, self.name))
        except InvalidArgumentError as exc:
            return Judged(Score(False, str(exc)))


def scorer(function: Callable[..., Any] | None = None, /, *, name: str | None = None) -> Any:
    """Name a scorer function: ``@scorer`` or ``@scorer(name="...")``."""

    def make(fn: Callable[..., Any]) -> Scorer:
        if isinstance(fn, Scorer):
            return fn
        if not callable(fn):
            raise InvalidArgumentError("scorer", f"must be callable, not {type_name(fn)}")
        label = name or getattr(fn, "__name__", None) or "score"
        return Scorer(check_str("name", label), fn)

    return make if function is None else make(function)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def exact(*, strip: bool = True, name: str = "exact") -> Scorer:
    """Pass when the output equals ``expected`` (text compared with surrounding whitespace
    removed, unless ``strip=False``; other values by equality)."""

    def check(case: Case, output: Any, result: Result[Any]) -> Score:
        if case.expected is None:
            return Score(False, "the case has no expected value")
        if isinstance(output, str) and isinstance(case.expected, str):
            same = output.strip() == case.expected.strip() if strip else output == case.expected
        else:
            same = output == case.expected
        return Score(same, None if same else f"expected {_text(case.expected)!r}")

    return Scorer(name, check)


def contains(*, case_sensitive: bool = False, name: str = "contains") -> Scorer:
    """Pass when ``expected`` (a text, or a list of texts: all of them) is in the output."""

    def check(case: Case, output: Any, result: Result[Any]) -> Score:
        wanted = case.expected
        if wanted is None:
            return Score(False, "the case has no expected value")
        needles = [wanted] if isinstance(wanted, str) else [_text(w) for w in wanted]
        haystack = _text(output)
        if not case_sensitive:
            haystack = haystack.lower()
        missing = [n for n in needles if (n if case_sensitive else n.lower()) not in haystack]
        return Score(not missing, None if not missing else f"missing {missing!r}")

    return Scorer(name, check)


def regex(pattern: str | None = None, *, name: str = "regex") -> Scorer:
    """Pass when ``pattern`` (or the case's ``expected``, as a pattern) matches the output."""
    compiled = None if pattern is None else re.compile(pattern)

    def check(case: Case, output: Any, result: Result[Any]) -> Score:
        rule = compiled
        if rule is None:
            if not isinstance(case.expected, str):
                return Score(False, "the case has no expected pattern")
            rule = re.compile(case.expected)
        found = rule.search(_text(output)) is not None
        return Score(found, None if found else f"no match for {rule.pattern!r}")

    return Scorer(name, check)


def json_schema(output_type: Any, *, name: str = "json_schema") -> Scorer:
    """Pass when the output (or its text, as JSON) validates as ``output_type``."""
    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(output_type)

    def check(case: Case, output: Any, result: Result[Any]) -> Score:
        try:
            if isinstance(output, str):
                adapter.validate_json(output)
            else:
                adapter.validate_python(output)
        except pydantic.ValidationError as exc:
            return Score(False, str(exc).splitlines()[0])
        return Score(True)

    return Scorer(name, check)


class _Verdict(pydantic.BaseModel):
    reason: str = pydantic.Field(max_length=200)
    passed: bool


JUDGE_PROMPT: Final = (
    "You grade an answer against a rubric.\n\nRubric: {rubric}\n\nQuestion: {input}\n\n"
    "Reference answer: {expected}\n\nAnswer to grade: {output}\n\n"
    "Reply as JSON with a short reason and whether the answer passes the rubric."
)


def llm_judge(
    rubric: str,
    provider: Provider | None = None,
    *,
    model: str | None = None,
    name: str = "llm_judge",
    **options: Any,
) -> Scorer:
    """Pass when a model says the output meets ``rubric``. The judge runs as an execution of
    its own on ``provider`` (default: the run's), so its cost is counted apart from the
    workflow's; a judge that fails scores the case as failed, saying why."""
    check_str("rubric", rubric)

    async def judge(case: Case, output: Any, result: Result[Any], run_on: Provider) -> Judged:
        on = provider if provider is not None else run_on
        prompt = JUDGE_PROMPT.format(
            rubric=rubric,
            input=_text(case.input),
            expected="(none)" if case.expected is None else _text(case.expected),
            output=_text(output),
        )

        async def ask(session: Any) -> _Verdict:
            verdict: _Verdict = await session.generate_object(
                output_type=_Verdict, prompt=prompt, model=model, **options
            )
            return verdict

        judged = await on.simple_execution(ask)
        usage = judged.summary.total_usage
        tokens = (usage.input_tokens or 0) + (usage.output_tokens or 0)
        if not judged.succeeded:
            why = judged.error if judged.error is not None else judged.cancel
            return Judged(Score(False, f"the judge did not answer: {why}"), judged.summary.cost)
        verdict = judged.value
        assert verdict is not None
        return Judged(Score(verdict.passed, verdict.reason), judged.summary.cost, tokens)

    return Scorer(name, judge, takes_provider=True)


#: The scorers ``--scorer NAME`` knows without a module.
BUILT_IN: Final[dict[str, Callable[[], Scorer]]] = {
    "exact": exact,
    "contains": contains,
    "regex": regex,
}


def resolve(spec: str) -> Scorer:
    """``--scorer``: a built-in name, or ``module:function`` (``file.py:function``) naming a
    scorer function or a :class:`Scorer`."""
    if spec in BUILT_IN:
        return BUILT_IN[spec]()
    if ":" not in spec:
        known = ", ".join(sorted(BUILT_IN))
        raise InvalidArgumentError(
            "scorer", f"{spec!r} is not a built-in scorer ({known}) nor module:function"
        )
    found = load_object(spec, "scorer")
    if isinstance(found, Scorer):
        return found
    if not callable(found):
        raise InvalidArgumentError("scorer", f"{spec} is {type_name(found)}, not a scorer")
    made: Scorer = scorer(found)
    return made
