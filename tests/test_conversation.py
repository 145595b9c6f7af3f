"""Conversations that survive Stop (scripted provider: deterministic)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

import agtl
from agtl import CancelMarker, Conversation, Role, Session, Status, ToolCallRequest
from agtl.testing import Reply, ScriptedProvider


async def chat(
    conversation: Conversation, reply: Reply, *, stop_after: int | None = None, **call: Any
) -> agtl.Result[str]:
    """One turn; with ``stop_after`` the execution is cancelled after that many deltas."""
    provider = ScriptedProvider(reply)
    seen: list[str] = []
    enough = trio.Event()

    async def turn(session: Session) -> str:
        stream: agtl.TextStream = session.stream_text(conversation=conversation, **call)
        async with stream:
            async for delta in stream:
                seen.append(delta)
                if stop_after is not None and len(seen) >= stop_after:
                    enough.set()
        return stream.text

    async with provider.simple_execution(turn) as execution:
        if stop_after is not None:
            await enough.wait()
            execution.cancel("user pressed stop")
        return await execution.result()


def roles(conversation: Conversation) -> list[str]:
    return ["marker" if isinstance(i, CancelMarker) else i.role.value for i in conversation]


async def test_a_finished_turn_appends_the_user_turn_and_the_reply() -> None:
    conversation = Conversation(system="Be brief.")
    result = await chat(conversation, Reply("Paris."), prompt="Capital of France?")
    assert result.value == "Paris."
    assert roles(conversation) == ["system", "user", "assistant"]
    reply = conversation.entries[-1]
    assert (reply.content, reply.partial, reply.reasoning) == ("Paris.", False, "")
    sent = [m.to_dict() for m in conversation.to_model_messages()]
    assert sent == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
    ]


async def test_cancel_after_streamed_text_keeps_a_partial_then_a_marker(
    autojump_clock: Any,
) -> None:
    conversation = Conversation()
    reply = Reply("The sea is wide and deep and old", delay=1)
    result = await chat(conversation, reply, stop_after=3, prompt="Tell me about the sea.")
    assert result.status is Status.CANCELED
    assert roles(conversation) == ["user", "assistant", "marker"]
    partial, marker = conversation.items[1], conversation.items[2]
    assert isinstance(partial, agtl.Entry)
    assert isinstance(marker, CancelMarker)
    assert partial.partial
    assert partial.content == "The sea is "
    assert marker.reason == "user pressed stop"
    assert marker.error is None
    # The model sees the partial reply; the marker is for people only.
    assert [m.content for m in conversation.to_model_messages()] == [
        "Tell me about the sea.",
        "The sea is ",
    ]


async def test_cancel_before_the_first_token_keeps_only_the_marker(autojump_clock: Any) -> None:
    conversation = Conversation()
    provider = ScriptedProvider(Reply("late", first_delay=10))
    started = trio.Event()

    async def turn(session: Session) -> str:
        async with session.stream_text(conversation=conversation, prompt="hello") as stream:
            started.set()
            async for _ in stream:
                pass
        return stream.text

    async with provider.simple_execution(turn) as execution:
        await started.wait()
        execution.cancel("stop")
    assert roles(conversation) == ["user", "marker"]


async def test_failure_keeps_the_partial_with_the_error() -> None:
    conversation = Conversation()
    reply = Reply("Half an answer", error=agtl.ProviderError("connection reset"))
    result = await chat(conversation, reply, prompt="q")
    assert result.status is Status.FAILED
    assert roles(conversation) == ["user", "assistant", "marker"]
    partial = conversation.entries[-1]
    assert partial.partial
    assert partial.error == agtl.ErrorInfo("ProviderError", "connection reset")
    assert conversation.markers[0].error == partial.error


async def test_leaving_the_stream_early_is_a_stop() -> None:
    conversation = Conversation()
    provider = ScriptedProvider("one two three four")

    async def turn(session: Session) -> None:
        async with session.stream_text(conversation=conversation, prompt="count") as stream:
            async for delta in stream:
                if delta.strip() == "two":
                    break

    await provider.simple_execution(turn).result()
    assert roles(conversation) == ["user", "assistant", "marker"]
    assert conversation.entries[-1].content == "one two "
    assert conversation.markers[0].reason == "the stream was left early"


async def test_a_timeout_marker_says_it_was_the_timeout(autojump_clock: Any) -> None:
    conversation = Conversation()
    provider = ScriptedProvider(Reply("slow words keep coming", delay=1))

    async def turn(session: Session) -> str:
        return (await session.generate_text(conversation=conversation, prompt="q")).text

    result = await provider.simple_execution(turn, timeout=2.5).result()
    assert result.status is Status.CANCELED
    assert conversation.markers[0].reason == "timeout=2.5s"
    assert conversation.entries[-1].content == "slow words "


def test_stopping_twice_in_one_turn_keeps_one_partial() -> None:
    conversation = Conversation()
    turn = conversation.begin_turn("q")
    turn.feed("some text")
    assert turn.stop("first") is not None
    assert turn.stop("second") is None
    assert turn.fail(RuntimeError("late")) is None
    assert turn.finish() is None
    assert roles(conversation) == ["user", "assistant", "marker"]
    assert conversation.markers[0].reason == "first"


@pytest.mark.parametrize("ws", ["", "   \n\t "])
def test_an_empty_or_blank_partial_is_dropped(ws: str) -> None:
    conversation = Conversation()
    turn = conversation.begin_turn("q")
    turn.feed(ws)
    turn.stop("stop")
    assert roles(conversation) == ["user", "marker"]


class TestReasoning:
    async def test_a_closed_think_block_then_an_answer(self) -> None:
        conversation = Conversation()
        chunks = ["<thi", "nk>The user wants", " a city.</th", "ink>\n", "Paris."]
        await chat(conversation, Reply(chunks), prompt="Capital of France?")
        reply = conversation.entries[-1]
        assert reply.reasoning == "The user wants a city."
        assert reply.content == "Paris."
        assert conversation.to_model_messages()[-1].content == "Paris."
        with_reasoning = conversation.to_model_messages(include_reasoning=True)[-1].content
        assert with_reasoning == "<think>The user wants a city.</think>\nParis."

    async def test_an_unclosed_block_at_a_stop_leaves_no_visible_partial(
        self, autojump_clock: Any
    ) -> None:
        conversation = Conversation()
        reply = Reply(["<thinking>", "Let me ", "consider ", "this ", "carefully"], delay=1)
        await chat(conversation, reply, stop_after=3, prompt="Hard question")
        assert roles(conversation) == ["user", "marker"]

    async def test_a_tag_quoted_mid_prose_is_left_alone(self) -> None:
        conversation = Conversation()
        text = "Models often write <think> before reasoning; that tag </think> is just text."
        await chat(conversation, Reply(text), prompt="What is <think>?")
        reply = conversation.entries[-1]
        assert reply.content == text
        assert reply.reasoning == ""

    async def test_thinking_variant_and_leading_whitespace(self) -> None:
        conversation = Conversation()
        await chat(conversation, Reply("  <thinking>hmm</thinking>  Yes."), prompt="q")
        reply = conversation.entries[-1]
        assert (reply.reasoning, reply.content) == ("hmm", "Yes.")


async def test_partial_buffers_are_bounded(autojump_clock: Any) -> None:
    conversation = Conversation(max_reply_chars=10)
    await chat(conversation, Reply("abcdefghijklmnopqrstuvwxyz"), prompt="alphabet")
    reply = conversation.entries[-1]
    assert reply.content == "abcdefghij"
    assert reply.truncated


def test_tool_calls_without_results_and_orphan_results_are_dropped() -> None:
    conversation = Conversation()
    conversation.add_user("weather and time?")
    calls = (ToolCallRequest("c1", "weather", '{"city": "Paris"}'), ToolCallRequest("c2", "time"))
    conversation.add_assistant("", tool_calls=calls)
    conversation.add_tool_result("c1", "sunny")
    conversation.add_tool_result("c9", "orphan result")
    conversation.add_assistant("Let me check.", tool_calls=(ToolCallRequest("c3", "stock"),))
    sent = [m.to_dict() for m in conversation.to_model_messages()]
    assert sent == [
        {"role": "user", "content": "weather and time?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
        {"role": "assistant", "content": "Let me check."},
    ]


def test_private_fields_are_never_sent() -> None:
    conversation = Conversation()
    conversation.add(Role.USER, "hi", metadata={"user_id": 42, "ip": "10.0.0.1"})
    assert conversation.to_model_messages()[0].to_dict() == {"role": "user", "content": "hi"}


class TestPersistence:
    def test_round_trip(self, tmp_path: Path) -> None:
        conversation = Conversation(system="s", max_reply_chars=50)
        turn = conversation.begin_turn("q")
        turn.feed("<think>r</think>partial")
        turn.fail(ValueError("boom"))
        conversation.add_assistant("", tool_calls=(ToolCallRequest("c1", "f"),))
        conversation.add_tool_result("c1", "42")
        path = tmp_path / "chat.json"
        conversation.save(path)
        loaded = Conversation.load(path)
        assert loaded.items == conversation.items
        assert loaded.max_reply_chars == 50
        assert loaded.to_model_messages() == conversation.to_model_messages()

    @pytest.mark.parametrize(
        "content",
        [
            "{not json",
            "[]",
            json.dumps({"format": "other"}),
            json.dumps({"format": "agtl.conversation/1", "items": [{"kind": "?"}]}),
        ],
    )
    def test_corrupt_files_give_a_clear_error(self, tmp_path: Path, content: str) -> None:
        path = tmp_path / "chat.json"
        path.write_text(content)
        with pytest.raises(agtl.ConversationFileError) as info:
            Conversation.load(path)
        assert str(info.value)

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(agtl.ConversationFileError, match="cannot read"):
            Conversation.load(tmp_path / "absent.json")

    def test_a_failed_save_leaves_the_previous_file_intact(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = tmp_path / "chat.json"
        first = Conversation(system="first")
        first.save(path)
        before = path.read_bytes()

        def explode(*args: Any, **kwargs: Any) -> None:
            raise OSError("disk full")

        second = Conversation(system="second")
        monkeypatch.setattr(json, "dump", explode)
        with pytest.raises(OSError, match="disk full"):
            second.save(path)
        assert path.read_bytes() == before
        assert [p.name for p in tmp_path.iterdir()] == ["chat.json"]


async def test_conversation_arguments_are_checked() -> None:
    conversation = Conversation()

    async def fn(session: Session) -> None:
        with pytest.raises(agtl.InvalidArgumentError, match="first turn"):
            session.stream_text(conversation=conversation)
        with pytest.raises(agtl.InvalidArgumentError, match="system prompt"):
            session.stream_text(conversation=conversation, prompt="x", system="s")
        with pytest.raises(agtl.InvalidArgumentError, match="conversation"):
            session.stream_text(conversation="history", prompt="x")  # type: ignore[call-overload]

    assert (await ScriptedProvider().simple_execution(fn).result()).status is Status.SUCCEEDED


def test_a_marker_saved_under_its_old_field_name_loads(tmp_path: Path) -> None:
    saved = tmp_path / "old.json"
    conversation = agtl.Conversation(system="s")
    conversation.save(saved)
    data = json.loads(saved.read_text())
    data["items"].append({"kind": "marker", "reason": "stopped", "at": 1700000000.0, "error": None})
    saved.write_text(json.dumps(data))
    [marker] = agtl.Conversation.load(saved).markers
    assert marker.created_at == 1700000000.0
    assert marker.reason == "stopped"
