"""Typed values leave the process in their JSON form and come back as they were.

A workflow's value, an event's data and a tool's result are pydantic models, dataclasses,
attrs classes, enums, datetimes, Decimals, sets and bytes as often as plain JSON; each has one
JSON form (``agtl._jsonable``), ``Result.from_dict(value_type=T)`` validates it back, and an
object with no JSON form is an :class:`agtl.UnserializableValueError` naming where it sits.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import socket
import uuid
from decimal import Decimal
from typing import Any

import attrs
import pydantic
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import agtl
from agtl import Result, Session, ToolCallRequest, ToolCallStatus, UnserializableValueError
from agtl._jsonable import jsonable, to_json
from agtl.testing import Reply, ScriptedProvider


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Place(pydantic.BaseModel):
    city: str
    founded: dt.date
    area_km2: Decimal
    tags: set[str]
    color: Color


@dataclasses.dataclass(frozen=True)
class Visit:
    place: Place
    at: dt.datetime
    stay: dt.timedelta
    photo: bytes
    ids: tuple[uuid.UUID, ...]
    notes: list[str] | None = None


@attrs.frozen
class Trip:
    name: str
    visits: list[Visit]
    budget: Decimal


text = st.text(max_size=12)
places = st.builds(
    Place,
    city=text,
    founded=st.dates(),
    area_km2=st.decimals(allow_nan=False, allow_infinity=False, places=3),
    tags=st.sets(text, max_size=3),
    color=st.sampled_from(Color),
)
visits = st.builds(
    Visit,
    place=places,
    at=st.datetimes(timezones=st.just(dt.UTC)),
    stay=st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=30)).map(
        lambda d: dt.timedelta(seconds=round(d.total_seconds(), 3))
    ),
    photo=st.binary(max_size=16),
    ids=st.lists(st.uuids(), max_size=2).map(tuple),
    notes=st.one_of(st.none(), st.lists(text, max_size=2)),
)
trips = st.builds(
    Trip,
    name=text,
    visits=st.lists(visits, max_size=2),
    budget=st.decimals(allow_nan=False, allow_infinity=False, places=2),
)


def _result_of(value: Any) -> Result[Any]:
    async def workflow(session: Session) -> Any:
        return value

    return trio.run(ScriptedProvider().simple_execution(workflow).result)


@settings(max_examples=60, deadline=None)
@given(trips)
def test_a_typed_value_round_trips_through_json(trip: Trip) -> None:
    result = _result_of(trip)
    wire = json.loads(json.dumps(result.to_dict()))  # what crosses a process or a queue
    back = Result.from_dict(wire, value_type=Trip)
    assert back.value == trip
    assert Result.from_dict(wire).value == to_json(trip)  # without a type: the JSON form


@settings(max_examples=40, deadline=None)
@given(st.lists(visits, max_size=2))
def test_dataclasses_and_models_round_trip_at_the_top_too(value: list[Visit]) -> None:
    wire = json.loads(json.dumps(_result_of(value).to_dict()))
    assert Result.from_dict(wire, value_type=list[Visit]).value == value
    if value:
        wire = json.loads(json.dumps(_result_of(value[0]).to_dict()))
        assert Result.from_dict(wire, value_type=Visit).value == value[0]
        place = value[0].place
        wire = json.loads(json.dumps(_result_of(place).to_dict()))
        assert Result.from_dict(wire, value_type=Place).value == place


def test_the_json_forms_are_documented_ones() -> None:
    visit = Visit(
        place=Place(
            city="Paris",
            founded=dt.date(250, 1, 1),
            area_km2=Decimal("105.4"),
            tags={"b", "a"},
            color=Color.BLUE,
        ),
        at=dt.datetime(2026, 12, 4, 10, 30, tzinfo=dt.UTC),
        stay=dt.timedelta(hours=2),
        photo=b"\x00\xff",
        ids=(uuid.UUID(int=1),),
    )
    encoded = to_json(visit)
    assert sorted(encoded["place"].pop("tags")) == ["a", "b"]  # pydantic keeps a set's order
    assert to_json({"b", "a"}) == ["a", "b"]  # outside a model, sorted for stable output
    assert encoded == {
        "place": {
            "city": "Paris",
            "founded": "0250-01-01",
            "area_km2": "105.4",
            "color": "blue",
        },
        "at": "2026-12-04T10:30:00+00:00",
        "stay": 7200.0,
        "photo": "AP8=",
        "ids": ["00000000-0000-0000-0000-000000000001"],
        "notes": None,
    }


def test_an_object_with_no_json_form_is_an_error_naming_where_it_is() -> None:
    with socket.socket() as sock:
        value = {"report": Trip("t", [], Decimal(1)), "links": [1, sock]}
        with pytest.raises(UnserializableValueError) as caught:
            to_json(value)
        assert caught.value.path == "value['links'][1]"
        assert "socket" in str(caught.value)
        assert isinstance(caught.value, TypeError)
        result = _result_of(value)
        with pytest.raises(UnserializableValueError, match=r"value\['links'\]\[1\]"):
            result.to_dict()
        # A summary is a report: it never fails, the part with no form is its repr.
        assert jsonable(value)["links"][1].startswith("<socket.socket")


def test_event_data_is_checked_where_it_sits() -> None:
    async def gen(session: Session) -> Any:
        yield session.emit(
            "place",
            Place(
                city="Rome",
                founded=dt.date(1, 1, 1),
                area_km2=Decimal(1),
                tags=set(),
                color=Color.RED,
            ),
        )
        yield session.emit("bad", object())
        yield await session.done(None)

    result = trio.run(ScriptedProvider().streaming_execution(gen).result)
    with pytest.raises(UnserializableValueError, match=r"events\[1\]\.data"):
        result.to_dict()


async def test_a_typed_tool_result_reaches_the_model_as_json() -> None:
    @agtl.tool
    async def lookup(city: str) -> Place:
        """Facts about a city."""
        return Place(
            city=city,
            founded=dt.date(250, 1, 1),
            area_km2=Decimal("105.4"),
            tags={"x"},
            color=Color.RED,
        )

    @agtl.tool
    async def handle(city: str) -> object:
        """Something with no JSON form."""
        return object()

    provider = ScriptedProvider(
        Reply("", tool_calls=[ToolCallRequest("c1", "lookup", {"city": "Paris"})]),
        Reply("", tool_calls=[ToolCallRequest("c2", "handle", {"city": "Paris"})]),
        Reply("done"),
    )

    async def workflow(session: Session) -> str:
        return (await session.generate_text(prompt="go", tools=[lookup, handle])).text

    result = await provider.simple_execution(workflow)
    assert result.value == "done"
    told = [m.content for m in provider.calls[1].messages if m.role is agtl.Role.TOOL]
    assert json.loads(told[0]) == {
        "city": "Paris",
        "founded": "0250-01-01",
        "area_km2": "105.4",
        "tags": ["x"],
        "color": "red",
    }
    first, second = result.summary.tool_calls
    assert first.status is ToolCallStatus.OK
    assert second.status is ToolCallStatus.ERROR
    assert "the result of handle is a object, which has no JSON form" in (second.error or "")
    told_again = [m.content for m in provider.calls[2].messages if m.role is agtl.Role.TOOL]
    assert told_again[1].startswith("Error: the result of handle")
    # the summary keeps the model's JSON form too
    assert result.summary.to_dict()["tool_calls"][0]["result"]["city"] == "Paris"


def test_tool_call_requests_take_a_dict_and_refuse_other_arguments() -> None:
    request = ToolCallRequest("c1", "lookup", {"city": "Paris"})
    assert json.loads(request.arguments) == {"city": "Paris"}
    with pytest.raises(agtl.InvalidArgumentError, match="arguments: must be JSON text or a dict"):
        ToolCallRequest("c1", "lookup", 3)
    with pytest.raises(agtl.InvalidArgumentError, match="name: must be a str"):
        ToolCallRequest("c1", None)
