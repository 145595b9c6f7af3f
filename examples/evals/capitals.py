"""A workflow and a scorer for ``capitals.jsonl``, on the bundled model.

    agtl eval examples/evals/capitals.jsonl examples/evals/capitals.py:answer \\
        --scorer contains --scorer examples/evals/capitals.py:short --out run.jsonl

``answer`` is the workflow each case runs (its input is the question); ``short`` is a scorer of
our own: a number from 0 to 1, lower for answers that ramble.
"""

from __future__ import annotations

from typing import Any

import agtl
from agtl import evals
from agtl_llamacpp import LlamaCppProvider

#: `agtl eval` uses the file's own provider, as `agtl serve` does.
agtl_provider = LlamaCppProvider(n_ctx=1024).with_default_options(temperature=0, max_tokens=24)


async def answer(session: agtl.Session, question: str) -> str:
    reply = await session.generate_text(prompt=question, system="Answer with the city's name only.")
    return reply.text.strip()


def short(case: evals.Case, output: Any, result: agtl.Result[Any]) -> evals.Score:
    """1.0 for an answer of at most three words, less the longer it gets."""
    words = len(str(output).split())
    return evals.Score(min(1.0, 3 / max(words, 1)), f"{words} words")
