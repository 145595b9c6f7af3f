"""`agtl serve` at its edges: a workflow that raises, a provider's secret in an error, the chat
page alone on the bundled model, and the mistakes that stop it from starting."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import trio

from tests.providers.hostile_server import HostileServer
from tests.serve.conftest import DEADLINE, ROOT

FLOWS = "tests/serve/flows.py"
SECRET = "sk-serve-DO-NOT-LEAK-7c1e22"


def test_a_workflow_that_raises_sends_its_error_as_data(serve: Any) -> None:
    server = serve(f"{FLOWS}:boom")
    execution_id = server.start({"n": 1})
    events = server.events(execution_id).all()
    assert [e.type for e in events] == ["end"]  # it raised: no event of its own
    assert events[-1].data["status"] == "failed"
    assert events[-1].data["error"] == {
        "type": "ValueError",
        "message": "cannot handle {'n': 1}",
    }
    record = server.outcome(execution_id)
    assert record["status"] == "failed"
    assert record["error"]["type"] == "ValueError"
    assert record["value"] is None
    assert server.stop() == 0


def test_a_tripped_guardrail_is_named_in_the_end_event(serve: Any) -> None:
    server = serve(f"{FLOWS}:guarded")
    execution_id = server.start({})
    events = server.events(execution_id).all()
    end = events[-1]
    assert end.type == "end"
    assert end.data["status"] == "failed"
    assert end.data["error"]["type"] == "GuardrailTripped"
    guardrail = end.data["guardrail"]
    assert (guardrail["name"], guardrail["stage"], guardrail["verdict"]) == (
        "max_length",
        "output",
        "block",
    )
    assert guardrail["tripped"] is True
    assert guardrail["tokens_paid"] < 2000  # the reply would have been 2000 pieces
    assert "".join(e.data for e in events if e.type == "text") == end.data["partial"]
    assert server.stop() == 0


@contextlib.contextmanager
def hostile_in_a_thread() -> Iterator[HostileServer]:
    """The hostile server on its own trio run in a thread (the serve tests are not async)."""
    server = HostileServer()
    ready = threading.Event()
    held: dict[str, Any] = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            held["scope"] = nursery.cancel_scope
            held["token"] = trio.lowlevel.current_trio_token()
            ready.set()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    assert ready.wait(DEADLINE), "the hostile server did not start"
    try:
        yield server
    finally:
        trio.from_thread.run_sync(held["scope"].cancel, trio_token=held["token"])
        thread.join(DEADLINE)


def test_a_provider_secret_in_an_error_never_reaches_the_client(serve: Any) -> None:
    with hostile_in_a_thread() as hostile:
        env = {"AGTL_TEST_API_KEY": SECRET, "AGTL_TEST_BASE_URL": hostile.base_url}
        server = serve("tests/serve/flows_remote.py:ask", env=env)
        execution_id = server.start({"model": "unauthorized"})
        events = server.events(execution_id).all()
        record = server.outcome(execution_id)
        listing = server.request("GET", f"/executions/{execution_id}")
        assert server.stop() == 0
    assert hostile.requests["unauthorized"] == 1  # the key went out, and came back echoed
    assert record["status"] == "failed"
    assert record["error"]["type"] == "AuthenticationError"
    assert "***" in record["error"]["message"]  # the echoed key, scrubbed
    everything = repr(events) + repr(record) + repr(listing)
    everything += "".join(server.stdout) + "".join(server.stderr)
    assert SECRET not in everything


def test_without_a_workflow_it_serves_the_chat_on_the_bundled_model(serve: Any) -> None:
    server = serve()
    assert "chat only" in "".join(server.stdout)
    refused = server.request("POST", "/executions", {"input": 1})
    assert refused.status == 404
    assert "runs no workflow" in refused.body["error"]
    turn = server.request(
        "POST", "/conversations/c1/turns", {"prompt": "What is the capital of France?"}
    )
    assert turn.status == 201, turn
    events = server.events(turn.body["id"]).all()
    assert events[-1].type == "end"
    assert events[-1].data["status"] == "succeeded"
    text = "".join(e.data for e in events if e.type == "text")
    assert text.strip()  # the model answered (what it says is the model's business)
    history = server.request("GET", "/conversations/c1").body
    replies = [i for i in history["items"] if i["kind"] == "entry" and i["role"] == "assistant"]
    assert [r["content"] for r in replies] == [text]  # the history keeps what streamed
    assert server.stop() == 0


def _serve_exits(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agtl.cli", "serve", f"{FLOWS}:add", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_a_port_in_use_is_one_line_not_a_traceback() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        completed = _serve_exits("--port", str(port))
    assert completed.returncode == 2, completed
    assert completed.stderr.splitlines() == [
        f"error: port {port} on 127.0.0.1 is already in use",
        "hint: pick another with --port, or stop the server that holds it",
    ]


def test_a_too_short_token_is_refused_before_it_listens() -> None:
    completed = _serve_exits("--port", "1", env={"AGTL_SERVE_TOKEN": "short"})
    assert completed.returncode == 2, completed
    assert completed.stderr.splitlines() == [
        "error: AGTL_SERVE_TOKEN is too short",
        "hint: use at least 16 characters",
    ]
    assert "short" not in completed.stdout


def test_typed_values_cross_the_wire_in_their_json_form(serve: Any) -> None:
    server = serve(f"{FLOWS}:typed")
    execution_id = server.start({})
    events = server.events(execution_id).all()
    assert [e.type for e in events] == ["odd", "complete", "end"]
    assert "has no JSON form" in events[0].data["unserializable"]
    answer = {"text": "Hello from the server.", "when": "2026-12-04", "cost": "0.25"}
    assert events[1].data == answer
    assert events[2].data["value"] == answer
    assert server.outcome(execution_id)["value"] == answer
    assert server.stop() == 0


def test_a_session_only_workflow_is_served(serve: Any) -> None:
    server = serve(f"{FLOWS}:session_only")
    execution_id = server.start({"ignored": True})
    record = server.outcome(execution_id)
    assert record["status"] == "succeeded", record
    assert record["value"] == "Hello from the server."
    assert server.stop() == 0


def test_every_error_is_json_and_executions_are_listed(serve: Any) -> None:
    server = serve(f"{FLOWS}:add")
    missing = server.request("GET", "/nowhere")
    assert missing.status == 404
    assert missing.body == {"error": "no such endpoint: /nowhere (see guides/serving.md)"}
    wrong = server.request("DELETE", "/executions")
    assert wrong.status == 405
    assert wrong.body == {"error": "DELETE is not allowed on /executions"}
    first = server.start({"a": 1, "b": 2})
    assert server.outcome(first)["status"] == "succeeded"
    second = server.start({"a": 2, "b": 2})
    assert server.outcome(second)["status"] == "succeeded"
    listed = server.request("GET", "/executions")
    assert listed.status == 200
    assert [row["id"] for row in listed.body["executions"]] == [second, first]
    assert {row["status"] for row in listed.body["executions"]} == {"succeeded"}
    running = server.request("GET", "/executions?status=running")
    assert running.body == {"executions": []}
    bad = server.request("GET", "/executions?status=done")
    assert bad.status == 422
    assert server.stop() == 0


def test_a_tool_call_waits_for_a_decision_over_http(serve: Any) -> None:
    """The approval request is an event and in the record; deny and approve by POST; an
    execution waiting with no client connected is not cancelled by the disconnect grace."""
    server = serve(f"{FLOWS}:pay", "--grace", "0.2")
    first = server.start({})
    stream = server.events(first)
    asked = stream.next()
    assert asked is not None
    assert asked.type == "approval_requested"
    assert asked.data == {"id": "t1", "tool": "transfer", "arguments": {"amount": 500}}
    stream.close()  # no client now: the grace is 0.2 s, yet the execution waits
    time.sleep(0.6)
    record = server.request("GET", f"/executions/{first}").body
    assert record["status"] is None  # still running
    assert [p["id"] for p in record["pending_approvals"]] == ["t1"]
    bad = server.request("POST", f"/executions/{first}/approvals/t1", {"approve": "yes"})
    assert bad.status == 422
    missing = server.request("POST", f"/executions/{first}/approvals/zz", {"approve": True})
    assert missing.status == 404
    denied = server.request(
        "POST", f"/executions/{first}/approvals/t1", {"approve": False, "reason": "no"}
    )
    assert denied.status == 200
    again = server.request("POST", f"/executions/{first}/approvals/t1", {"approve": True})
    assert again.status == 409
    outcome = server.outcome(first)
    assert outcome["value"] == "the tool said: The user denied this call: no"
    assert outcome["summary"]["tool_calls"][0]["status"] == "denied"

    second = server.start({})
    events = server.events(second)
    opened = events.next()
    assert opened is not None
    assert opened.type == "approval_requested"
    decision = {"approve": True, "by": "ops"}
    ok = server.request("POST", f"/executions/{second}/approvals/t1", decision)
    assert ok.status == 200
    rest = events.all()
    assert rest[-1].data["value"] == "the tool said: sent 500"
    approval = server.outcome(second)["summary"]["tool_calls"][0]["approval"]
    assert approval["approved"] is True
    assert approval["by"] == "ops"
    assert server.stop() == 0


def test_a_workflow_question_is_answered_over_http(serve: Any) -> None:
    server = serve(f"{FLOWS}:question", "--grace", "0.2")
    execution_id = server.start({})
    events = server.events(execution_id)
    asked = events.next()
    assert asked is not None
    assert asked.type == "input_requested"
    assert asked.data["prompt"] == "How many?"
    request_id = asked.data["id"]
    record = server.request("GET", f"/executions/{execution_id}").body
    assert [q["id"] for q in record["pending_inputs"]] == [request_id]
    path = f"/executions/{execution_id}/inputs/{request_id}"
    assert server.request("POST", path, {"value": "many"}).status == 422  # still open
    assert server.request("POST", path, {}).status == 422
    assert (
        server.request("POST", f"/executions/{execution_id}/inputs/zz", {"value": 1}).status == 404
    )
    assert server.request("POST", path, {"value": 3}).status == 200
    assert server.request("POST", path, {"value": 4}).status == 409
    assert events.all()[-1].data["value"] == "6 halves"
    assert server.stop() == 0
