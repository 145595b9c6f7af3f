"""Typed output that streams: the JSON parsed as it arrives (every split of the text gives the
same values, a snapshot never changes afterwards), partials that only grow, the validated
object at the end, retries, and the last partial kept when the execution stops."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import agtl
from agtl import Session, Status
from agtl._partial_json import PartialJSON
from agtl.testing import Reply, ScriptedProvider

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    value=JSON,
    cuts=st.lists(st.integers(min_value=1, max_value=9), max_size=400),
    ascii_only=st.booleans(),
)
def test_any_split_of_any_json_text_parses_to_the_same_value(
    value: Any, cuts: list[int], ascii_only: bool
) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    parser = PartialJSON()
    handed_out: list[tuple[Any, str]] = []
    at, sizes = 0, iter(cuts)
    while at < len(text):
        size = next(sizes, 7)
        if parser.feed(text[at : at + size]):
            snapshot = parser.snapshot()
            handed_out.append((snapshot, json.dumps(snapshot)))
        at += size
    parser.finish()
    assert parser.complete
    assert json.dumps(parser.snapshot()) == json.dumps(value)
    for snapshot, when_handed in handed_out:
        assert json.dumps(snapshot) == when_handed  # later pieces never changed it


@pytest.mark.parametrize(
    "text",
    ['{"a" 1}', "[1,,2]", '{"a":1}}', '{"a":tru}', "1 2", '{"a":"\\q"}', "]"],
)
def test_text_that_can_never_be_json_is_refused(text: str) -> None:
    parser = PartialJSON()
    with pytest.raises(ValueError, match=r"."):
        parser.feed(text)
        parser.finish()


class Story(pydantic.BaseModel):
    title: str
    chapters: list[str]
    pages: int


STORY = Story(title="The long way", chapters=[f"chapter {i}" for i in range(8)], pages=120)


def _chunks(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


async def test_partials_grow_and_the_final_object_validates(autojump_clock: Any) -> None:
    provider = ScriptedProvider(Reply(_chunks(STORY.model_dump_json()), delay=0.01))

    async def workflow(session: Session) -> tuple[list[Any], Story]:
        partials = []
        async with session.stream_object(output_type=Story, prompt="a story") as stream:
            async for partial in stream:
                partials.append(partial)
        return partials, stream.object

    partials, story = (await provider.simple_execution(workflow)).unwrap()
    assert story == STORY
    assert partials[-1] == STORY.model_dump()
    lengths = [len(p.get("chapters", [])) for p in partials]
    assert lengths == sorted(lengths)  # the list only grows
    titles = [p["title"] for p in partials if "title" in p]
    assert all(STORY.title.startswith(t) for t in titles)  # the string being written, cut
    assert "pages" not in partials[0]


async def test_an_invalid_reply_is_sent_back_and_the_next_attempt_streams(
    autojump_clock: Any,
) -> None:
    provider = ScriptedProvider(
        Reply(_chunks('{"title": "x", "chapters": []}')),  # "pages" is missing
        Reply(_chunks(STORY.model_dump_json())),
    )

    async def workflow(session: Session) -> Story:
        async with session.stream_object(output_type=Story, prompt="a story") as stream:
            async for _ in stream:
                pass
        return stream.object  # type: ignore[no-any-return]

    result = await provider.simple_execution(workflow)
    assert result.unwrap() == STORY
    assert result.summary.llm_call_count == 2
    [invalid] = [r for r in result.summary.records if r.kind == "generate_object.invalid"]
    assert "pages" in invalid.data["problem"]


async def test_out_of_retries_raises_output_validation_error(autojump_clock: Any) -> None:
    provider = ScriptedProvider(Reply("not json"), Reply("still not"))

    async def workflow(session: Session) -> None:
        async with session.stream_object(output_type=Story, prompt="x", retries=1) as stream:
            async for _ in stream:
                pass

    result = await provider.simple_execution(workflow)
    assert isinstance(result.error, agtl.OutputValidationError)
    assert result.error.attempts == 2


async def test_a_stop_mid_stream_keeps_the_last_partial_object(autojump_clock: Any) -> None:
    provider = ScriptedProvider(Reply(_chunks(STORY.model_dump_json()), delay=0.01))
    seen: list[Any] = []

    async def workflow(session: Session) -> None:
        async with session.stream_object(output_type=Story, prompt="a story") as stream:
            async for partial in stream:
                seen.append(partial)
                if len(partial.get("chapters", [])) == 3:
                    await trio.sleep_forever()  # the reader waits; the cancel lands here

    execution = provider.simple_execution(workflow, timeout=5)
    result = await execution
    assert result.status is Status.CANCELED
    assert result.partial is not None
    assert result.partial.object == seen[-1]
    assert len(result.partial.object["chapters"]) == 3
    again = agtl.Result.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.partial is not None
    assert again.partial.object == seen[-1]


async def test_stream_object_refuses_what_generate_object_refuses() -> None:
    provider = ScriptedProvider(Reply("{}"))

    async def workflow(session: Session) -> None:
        session.stream_object(output_type=Story, prompt="x", tools=[])

    result = await provider.simple_execution(workflow)
    assert isinstance(result.error, agtl.InvalidArgumentError)
    assert "stream_object runs no tools" in str(result.error)


async def test_an_output_guardrail_stops_an_object_stream(autojump_clock: Any) -> None:
    @agtl.guardrail(every="chunk")
    def no_chapter_5(text: str) -> agtl.Verdict:
        return agtl.Verdict.block("chapter 5") if "chapter 5" in text else agtl.Verdict.ok()

    provider = ScriptedProvider(Reply(_chunks(STORY.model_dump_json()), delay=0.01))

    async def workflow(session: Session) -> None:
        async with session.stream_object(
            output_type=Story, prompt="x", output_guardrails=[no_chapter_5]
        ) as stream:
            async for _ in stream:
                pass

    result = await provider.simple_execution(workflow)
    assert isinstance(result.error, agtl.GuardrailTripped)
    assert result.partial is not None
    assert 4 <= len(result.partial.object["chapters"]) <= 6
