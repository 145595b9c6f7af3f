"""The HTTP API of `agtl serve`, against a real server process on a scripted provider."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.serve.conftest import DEADLINE, Server, start_server

FLOWS = "tests/serve/flows.py"
GRACE = 0.5


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    summaries = tmp_path_factory.mktemp("serve") / "runs.jsonl"
    server = start_server(
        f"{FLOWS}:talk",
        "--grace",
        str(GRACE),
        "--max-running",
        "4",
        "--log-summaries",
        str(summaries),
    )
    yield server
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait(DEADLINE)


def test_start_stream_and_read_the_result(talk: Server) -> None:
    execution_id = talk.start({"prompt": "hi"})
    events = talk.events(execution_id).all()
    assert [e.type for e in events] == ["text"] * 4 + ["complete", "end"]
    assert [e.id for e in events] == list(range(6))  # every event carries an id
    assert "".join(e.data for e in events[:4]) == "Hello from the server."
    assert events[-1].data["status"] == "succeeded"
    record = talk.outcome(execution_id)
    assert record["status"] == "succeeded"
    assert record["value"] == "Hello from the server."
    assert record["summary"]["llm_call_count"] == 1
    assert record["summary"]["execution_id"] == execution_id


def test_cancel_stops_the_generation_and_keeps_the_partial(talk: Server) -> None:
    execution_id = talk.start({"prompt": "slow"})
    stream = talk.events(execution_id)
    first = stream.next()
    assert first is not None
    assert first.type == "text"
    reply = talk.request("POST", f"/executions/{execution_id}/cancel", {"reason": "enough"})
    assert reply.status == 202
    rest = stream.all()
    assert rest[-1].type == "end"
    cancel = rest[-1].data["cancel"]
    assert (cancel["source"], cancel["reason"]) == ("handle", "enough")
    record = talk.outcome(execution_id)
    assert record["status"] == "canceled"
    assert record["partial"].startswith("word ")
    assert record["summary"]["llm_calls"][0]["stop_reason"] == "cancelled"
    assert record["summary"]["total_usage"]["output_tokens"] < 2000  # it stopped early


def test_a_soft_cancel_lets_the_reply_finish_then_stops(talk: Server) -> None:
    execution_id = talk.start({"prompt": "medium"})
    stream = talk.events(execution_id)
    assert stream.next() is not None  # it is streaming
    for wrong in ({"mode": "gentle"}, {"grace": 1}, {"mode": "soft", "after": "turn"}):
        refused = talk.request("POST", f"/executions/{execution_id}/cancel", wrong)
        assert refused.status == 422, wrong
    reply = talk.request(
        "POST", f"/executions/{execution_id}/cancel", {"mode": "soft", "reason": "later"}
    )
    assert reply.status == 202
    rest = stream.all()
    cancel = rest[-1].data["cancel"]
    assert (cancel["mode"], cancel["reason"]) == ("soft", "later")
    record = talk.outcome(execution_id)
    assert record["status"] == "canceled"
    assert record["partial"] == "word " * 100  # the reply finished
    assert record["summary"]["llm_calls"][0]["stop_reason"] == "eos"


def test_a_reconnect_resumes_without_loss_or_duplicates(serve: Any) -> None:
    server = serve(f"{FLOWS}:ticks", "--grace", "5")
    execution_id = server.start(30)
    first = server.events(execution_id)
    seen = [first.next() for _ in range(5)]
    first.close()  # the connection drops mid-stream
    last = seen[-1]
    assert last is not None
    second = server.events(execution_id, last_event_id=last.id)
    rest = second.all()
    events = [e for e in seen if e is not None] + rest
    ticks = [e.data for e in events if e.type == "tick"]
    assert ticks == list(range(30))  # none lost, none twice
    assert [e.id for e in events] == list(range(len(events)))
    assert events[-1].type == "end"
    assert events[-1].data["status"] == "succeeded"  # the reconnect kept it alive


def test_the_last_client_leaving_cancels_after_the_grace(talk: Server) -> None:
    execution_id = talk.start({"prompt": "slow"})
    stream = talk.events(execution_id)
    assert stream.next() is not None
    left = time.monotonic()
    stream.close()
    record = talk.outcome(execution_id)
    waited = time.monotonic() - left
    assert record["status"] == "canceled"
    assert record["cancel"]["source"] == "signal"
    assert record["cancel"]["reason"] == "client disconnected"
    assert waited >= GRACE  # the grace let a reconnect keep it
    assert record["summary"]["llm_calls"][0]["stop_reason"] == "cancelled"


def test_an_execution_nobody_connects_to_is_cancelled_unless_detached(talk: Server) -> None:
    abandoned = talk.start({"prompt": "slow"})
    assert talk.outcome(abandoned)["cancel"]["reason"] == "client disconnected"

    detached = talk.start({"prompt": "slow"}, detach=True)
    still = talk.outcome(detached, wait=GRACE * 4)  # the wait ends with it still running
    assert still["status"] is None
    assert talk.request("POST", f"/executions/{detached}/cancel").status == 202
    assert talk.outcome(detached)["cancel"]["source"] == "handle"


def test_the_concurrency_limit_answers_429(talk: Server) -> None:
    running = [talk.start({"prompt": "slow"}, detach=True) for _ in range(4)]
    try:
        refused = talk.request("POST", "/executions", {"input": {"prompt": "slow"}})
        assert refused.status == 429
        assert refused.headers["retry-after"] == "1"
        assert "4 executions are running" in refused.body["error"]
    finally:
        for execution_id in running:
            talk.request("POST", f"/executions/{execution_id}/cancel", {"reason": "test over"})
    for execution_id in running:
        assert talk.outcome(execution_id)["status"] == "canceled"
    assert talk.start({"prompt": "hi"})  # room again


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("POST", "/executions", b"{not json", 400, "not JSON"),
        ("POST", "/executions", b"[1, 2]", 422, "must be a JSON object"),
        ("POST", "/executions", b'{"inputs": 1}', 422, "unknown field(s) inputs"),
        ("POST", "/executions", b'{"timeout": -1}', 422, "timeout: must be a positive"),
        ("POST", "/executions", b'{"timeout": "soon"}', 422, "timeout: must be a positive"),
        ("POST", "/executions", b'{"detach": "yes"}', 422, "detach: must be true or false"),
        ("POST", "/executions", b'{"input": "' + b"x" * (1 << 20) + b'"}', 413, "byte limit"),
        # Far over the limit: still a 413, not a connection reset while the client sends.
        ("POST", "/executions", b'{"input": "' + b"x" * (6 << 20) + b'"}', 413, "byte limit"),
        ("GET", "/executions/nope", None, 404, "no such execution"),
        ("GET", "/executions/nope/events", None, 404, "no such execution"),
        ("POST", "/executions/nope/cancel", None, 404, "no such execution"),
        ("POST", "/conversations/bad%20id/turns", b'{"prompt": "hi"}', 422, "conversation id"),
        ("POST", "/conversations/c1/turns", b'{"prompt": ""}', 422, "prompt: must be"),
        ("GET", "/conversations/never", None, 404, "no conversation"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_message(
    talk: Server, method: str, path: str, body: bytes | None, status: int, message: str
) -> None:
    reply = talk.request(method, path, raw=body)
    assert reply.status == status, reply
    assert message in reply.body["error"]


def test_bad_wait_and_last_event_id(talk: Server) -> None:
    execution_id = talk.start({"prompt": "hi"}, detach=True)
    assert talk.request("GET", f"/executions/{execution_id}?wait=soon").status == 422
    assert talk.request("GET", f"/executions/{execution_id}?wait=9999").status == 422
    assert talk.request("GET", f"/executions/{execution_id}/events?after=x").status == 422


def test_a_coroutine_workflow_and_a_required_token(serve: Any) -> None:
    token = "t0k3n-for-the-serve-tests-0123456789"
    server = serve(f"{FLOWS}:add", token=token)
    no_token = server.request("POST", "/executions", {"input": {"a": 1, "b": 2}}, token="")
    assert no_token.status == 401
    assert no_token.headers["www-authenticate"] == "Bearer"
    wrong = server.request("POST", "/executions", {"input": 1}, token="x" * 36)
    assert wrong.status == 401
    execution_id = server.start({"a": 2, "b": 3})
    events = server.events(execution_id).all()
    assert [(e.type, e.data) for e in events] == [("complete", 5), ("end", events[-1].data)]
    assert server.outcome(execution_id)["value"] == 5
    page = server.request("GET", "/", token="")  # the page itself needs no token
    assert page.status == 200
    assert b"agtl chat" in page.body
    assert server.stop() == 0
    logs = "".join(server.stderr)
    assert token not in logs


def test_chat_turns_keep_a_stopped_reply_in_the_history(talk: Server) -> None:
    first = talk.request("POST", "/conversations/chat-1/turns", {"prompt": "hi"})
    assert first.status == 201
    assert talk.events(first.body["id"]).all()[-1].data["status"] == "succeeded"

    stopped = talk.request("POST", "/conversations/chat-1/turns", {"prompt": "slow story"})
    stream = talk.events(stopped.body["id"])
    assert stream.next() is not None
    busy = talk.request("POST", "/conversations/chat-1/turns", {"prompt": "hi"})
    assert busy.status == 409  # one turn at a time
    talk.request("POST", f"/executions/{stopped.body['id']}/cancel", {"reason": "Stop pressed"})
    assert stream.all()[-1].data["status"] == "canceled"

    third = talk.request("POST", "/conversations/chat-1/turns", {"prompt": "hi again"})
    assert third.status == 201
    talk.events(third.body["id"]).all()
    history = talk.request("GET", "/conversations/chat-1").body
    entries = [i for i in history["items"] if i["kind"] == "entry"]
    assert [(e["role"], e["partial"]) for e in entries] == [
        ("user", False),
        ("assistant", False),
        ("user", False),
        ("assistant", True),  # the stopped reply, kept and marked
        ("user", False),
        ("assistant", False),
    ]
    assert entries[3]["content"].startswith("word ")
    markers = [i for i in history["items"] if i["kind"] == "marker"]
    assert markers[0]["reason"] == "Stop pressed"


def test_shutdown_cancels_what_runs_and_records_it(serve: Any, tmp_path: Any) -> None:
    summaries = tmp_path / "runs.jsonl"
    server = serve(f"{FLOWS}:talk", "--log-summaries", str(summaries))
    execution_id = server.start({"prompt": "slow"}, detach=True)
    stream = server.events(execution_id)
    assert stream.next() is not None
    assert server.stop() == 0
    [record] = [json.loads(line) for line in summaries.read_text().splitlines()]
    assert record["execution_id"] == execution_id
    assert record["status"] == "canceled"
    assert record["cancel"]["reason"] == "server shutting down"
    assert "agtl serve: stopped" in "".join(server.stdout)


def test_an_agent_team_is_served_with_its_tree_in_the_outcome(serve: Any) -> None:
    server = serve(f"{FLOWS}:team")
    execution_id = server.start({"prompt": "plan a trip"})
    events = server.events(execution_id).all()
    assert events[-1].data["status"] == "succeeded"
    record = server.outcome(execution_id)
    assert record["value"] == "planner: helper on plan a trip"
    [child] = record["summary"]["children"]
    assert child["status"] == "succeeded"
    assert [c["details"]["agent"] for c in record["summary"]["llm_calls"]] == ["planner"] * 2
