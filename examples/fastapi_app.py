"""agtl in an asyncio web app: FastAPI under uvicorn, the bundled model, Stop by disconnecting.

Run it with ``uvicorn examples.fastapi_app:app``. ``GET /ask?q=...`` answers one question;
``GET /stream?q=...`` streams the reply as it is written (one line per piece), and a client
that goes away stops the generation there: the execution is cancelled (source ``signal``)
and its summary is still recorded. Every summary is appended to ``$AGTL_SUMMARIES`` if set.

agtl runs on trio; ``agtl.aio`` runs it on one trio guest run inside uvicorn's asyncio loop.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import StreamingResponse

import agtl
from agtl.reporting import JsonlSink
from agtl_llamacpp import LlamaCppProvider

SYSTEM = "You are a helpful assistant. Answer in one sentence."
provider: LlamaCppProvider | None = None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    global provider
    local = LlamaCppProvider(n_ctx=2048).with_default_options(temperature=0, max_tokens=96)
    if os.environ.get("AGTL_SUMMARIES"):
        local = local.with_summary_sink(JsonlSink(os.environ["AGTL_SUMMARIES"]))
    provider = local
    yield
    await agtl.aio.call(local.aclose)  # the model is freed on agtl's side of the loop


app = FastAPI(lifespan=lifespan)


@app.get("/ask")
async def ask(q: str) -> dict[str, object]:
    assert provider is not None
    result = await agtl.aio.result(provider.generate_text(q, system=SYSTEM, execution_timeout=60))
    return {
        "status": result.status.value,
        "text": None if result.value is None else result.value.text,
        "output_tokens": result.summary.total_usage.output_tokens,
        "execution_id": result.execution_id,
    }


@app.get("/stream")
async def stream(q: str) -> StreamingResponse:
    assert provider is not None

    async def speak(session: agtl.Session) -> AsyncIterator[agtl.Event]:
        async with session.stream_text(prompt=q, system=SYSTEM) as reply:
            async for piece in reply:
                yield session.emit("text", piece)
        yield await session.done(reply.text)

    execution = provider.streaming_execution(speak)

    async def lines() -> AsyncIterator[str]:
        yield f"id {execution.execution_id}\n"
        async for event in agtl.aio.events(execution):
            if event.type == "text":
                yield f"text {event.data!r}\n"

    return StreamingResponse(lines(), media_type="text/plain")
