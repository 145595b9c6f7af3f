"""agtl on Temporal, end to end: ``make temporal-demo`` (or ``python -m examples.temporal_demo``).

Starts a Temporal dev server and two ``agtl worker`` processes on 127.0.0.1, submits four
questions to the bundled model and one long story, cancels the story through Temporal once it
is streaming, prints every Result (which worker ran it, tokens, time) and the report of the
gathered summaries, then stops everything.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import agtl
from agtl import temporal
from agtl.reporting import JsonlSink
from agtl.temporal import ProviderSpec
from agtl.temporal.testing import WorkerProcess, dev_server

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "What is the capital of France?",
    "What is the capital of Japan?",
    "Name a primary colour.",
    "What is 2 + 2?",
]
MODEL = ProviderSpec.local(temperature=0)


async def answer(session: agtl.Session, input: dict[str, Any]) -> str:
    """The workflow the workers run: one question, a short answer."""
    reply = await session.generate_text(prompt=input["question"], max_tokens=40)
    return reply.text


async def story(session: agtl.Session, input: dict[str, Any]) -> str:
    reply = await session.generate_text(prompt=input["prompt"], max_tokens=400)
    return reply.text


async def submit_all(address: str, queue: str) -> tuple[list[agtl.Result[Any]], agtl.Result[Any]]:
    client = await temporal.connect(address)
    handles = [
        await temporal.submit(
            client,
            "examples.temporal_demo:answer",
            {"question": question},
            provider=MODEL,
            task_queue=queue,
            timeout=120,
        )
        for question in QUESTIONS
    ]
    long = await temporal.submit(
        client,
        "examples.temporal_demo:story",
        {"prompt": "Write a long story about a lighthouse."},
        provider=MODEL,
        task_queue=queue,
        timeout=120,
    )
    deadline = time.monotonic() + 120
    while (progress := await long.progress()) is None or progress.streamed_chars == 0:
        if time.monotonic() > deadline:
            raise TimeoutError("the story never started streaming")
        await asyncio.sleep(0.1)
    await long.cancel(reason="the demo stopped it")
    results = [await handle.result() for handle in handles]
    canceled = await long.result()
    del client, handles, long
    gc.collect()
    return results, canceled


def main() -> tuple[list[agtl.Result[Any]], agtl.Result[Any]]:
    queue = f"agtl-demo-{uuid.uuid4().hex[:6]}"
    with dev_server() as address:
        print(f"Temporal dev server at {address}; starting two workers on task queue {queue!r}")
        workers = [
            WorkerProcess.start(address, queue, concurrency=2, paths=[ROOT]) for _ in range(2)
        ]
        try:
            results, canceled = asyncio.run(submit_all(address, queue))
        finally:
            for worker in workers:
                worker.stop()
    print()
    for question, result in zip(QUESTIONS, results, strict=True):
        ran_on = result.summary.metadata.get("temporal_worker")
        usage = result.summary.total_usage
        print(f"{question}\n  -> {result.value!r}")
        print(
            f"  {result.status.value} on worker {ran_on}, {usage.output_tokens} tokens out, "
            f"{result.summary.duration:.2f} s"
        )
    assert canceled.cancel is not None
    assert canceled.partial is not None
    print(f"\nThe story: {canceled.status.value} ({canceled.cancel.reason})")
    print(f"  kept: {canceled.partial.text[:100]!r}...")
    with tempfile.TemporaryDirectory() as directory:
        gathered = Path(directory) / "summaries.jsonl"
        sink = JsonlSink(gathered)
        for result in [*results, canceled]:
            sink.write(result)
        print(flush=True)
        # What `agtl report` makes of the Results gathered from Temporal.
        subprocess.run([sys.executable, "-m", "agtl.cli", "report", str(gathered)], check=True)
    return results, canceled


if __name__ == "__main__":
    main()
