"""`agtl serve` as an OpenAI chat model: the real `openai` client against a real server
process (scripted provider), and agtl's own OpenAIProvider in front of `agtl serve` on the
bundled model (agtl calling agtl)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import trio

import agtl
from agtl_openai import OpenAIProvider
from tests.serve.conftest import DEADLINE, Server, start_server

FLOWS = "tests/serve/flows.py"
TOKEN = "test-token-0123456789abcdef"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    served = start_server(f"{FLOWS}:chat", token=TOKEN)
    yield served
    if served.process.poll() is None:
        served.process.kill()
        served.process.wait(DEADLINE)


def _client(server: Server, key: str = TOKEN) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key=key, max_retries=0)


def test_models_lists_the_served_workflow(server: Server) -> None:
    models = _client(server).models.list()
    assert [m.id for m in models.data] == ["chat"]


def test_a_completion_and_its_usage(server: Server) -> None:
    reply = _client(server).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], temperature=0
    )
    assert reply.choices[0].message.content == "Hello from the server."
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 4
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 4
    assert reply.id.startswith("chatcmpl-")


def test_a_streamed_completion_with_the_usage_chunk(server: Server) -> None:
    stream = _client(server).chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage, finish = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert pieces == ["Hello ", "from ", "the ", "server."]
    assert finish == "stop"
    assert usage is not None
    assert usage.completion_tokens == 4


def test_errors_come_in_openais_shape(server: Server) -> None:
    client = _client(server)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert "the model 'gpt-9' does not exist here" in str(missing.value)
    with pytest.raises(openai.BadRequestError, match="messages: a non-empty list"):
        client.chat.completions.create(model="chat", messages=[])
    with pytest.raises(openai.AuthenticationError, match="bearer token"):
        _client(server, key="wrong-key").models.list()


def test_a_client_that_leaves_mid_stream_cancels_the_execution(server: Server) -> None:
    stream = _client(server).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "slow story"}], stream=True
    )
    received = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            received += 1
        if received == 5:
            break
    stream.close()
    deadline = time.monotonic() + DEADLINE
    canceled: list[Any] = []
    while not canceled and time.monotonic() < deadline:
        listed = server.request("GET", "/executions?status=canceled").body["executions"]
        canceled = [row for row in listed if row["detached"]]
        time.sleep(0.05)
    assert canceled, "the execution was not cancelled"
    outcome = server.outcome(canceled[0]["id"])
    assert outcome["cancel"]["reason"] == "client disconnected"
    assert outcome["partial"].startswith("word word word word word")


# -- agtl calling agtl --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_server() -> Iterator[Server]:
    served = start_server("examples/serve_app.py:chat_model")
    yield served
    if served.process.poll() is None:
        served.process.kill()
        served.process.wait(DEADLINE)


async def test_agtl_calling_agtl_keeps_usage_and_the_stop(local_server: Server) -> None:
    url = f"http://127.0.0.1:{local_server.port}/v1"
    async with OpenAIProvider(base_url=url, api_key="unused").with_default_model(
        "chat_model"
    ) as provider:
        provider = provider.with_pricing({"chat_model": agtl.Price.free()})
        answered = await provider.simple_execution(
            lambda s: s.generate_text(prompt="What is the capital of France?", max_tokens=16)
        )
        reply = answered.unwrap()
        assert reply.text
        assert reply.usage.output_tokens is not None
        assert reply.usage.output_tokens > 0
        assert reply.usage.provenance is agtl.Provenance.PROVIDER  # the served model's figures

        async def essay(session: agtl.Session) -> str:
            async with session.stream_text(
                prompt="Write a long essay about the sea.", max_tokens=400
            ) as stream:
                async for _ in stream:
                    if len(stream.text) > 40:
                        execution.cancel("enough")
                        await trio.sleep(10)
            return stream.text

        execution = provider.simple_execution(essay)
        stopped = await execution
        assert stopped.status is agtl.Status.CANCELED
        assert stopped.partial is not None
        assert len(stopped.partial.text) > 40  # what had come over the wire is kept
    deadline = time.monotonic() + DEADLINE
    ended: list[Any] = []
    while not ended and time.monotonic() < deadline:
        listed = local_server.request("GET", "/executions?status=canceled").body["executions"]
        ended = listed
        await trio.sleep(0.05)
    assert ended, "the served execution did not stop"
    served = local_server.outcome(ended[0]["id"])
    assert served["cancel"]["reason"] == "client disconnected"
    [call] = served["summary"]["llm_calls"]
    assert call["stop_reason"] == "cancelled"
    assert call["usage"]["output_tokens"] < 400  # the served model stopped too
