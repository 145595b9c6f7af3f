"""JSON forms of the values agtl ships out of the process: results, events, tool results.

One set of rules everywhere a value leaves as JSON (``Result.to_dict``, ``agtl run --json``,
``agtl serve``, Temporal, a tool's result sent to the model):

- JSON's own types go through as they are; tuples, lists, sets and frozensets become arrays
  (a set's items sorted when they can be, so the output is stable; inside a pydantic model,
  pydantic's own order);
- a pydantic model becomes ``model_dump(mode="json")``; a dataclass or an attrs instance an
  object of its fields, each by these rules;
- an enum becomes its value; a datetime, date or time its ISO 8601 text; a timedelta its
  seconds (a number); a Decimal, UUID or path its text; bytes their standard base64 text;
  an exception ``{"type", "message"}``;
- anything else has no JSON form: :func:`to_json` raises :class:`UnserializableValueError`
  naming where it sits, and :func:`jsonable` (for reports, which must never fail: summaries,
  records, logs) writes its ``repr`` instead.

:func:`from_json` is the way back: pydantic validates the JSON form as the type it was.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import json
import uuid
from collections.abc import Mapping
from decimal import Decimal
from functools import cache
from pathlib import PurePath
from typing import Any

import attrs
import pydantic
from pydantic_core import PydanticSerializationError

from agtl.errors import UnserializableValueError

__all__ = ["from_json", "jsonable", "to_json"]

_SCALARS = (str, int, float, bool, type(None))


def to_json(value: Any, where: str = "value") -> Any:
    """The JSON form of ``value``; :class:`UnserializableValueError` names the first part
    of it that has none (``where`` is how the message names the whole)."""
    return _encode(value, where, strict=True)


def jsonable(value: Any) -> Any:
    """The JSON form of ``value``, with the repr of any part that has none (for reports)."""
    return _encode(value, "value", strict=False)


def from_json(value: Any, value_type: Any) -> Any:
    """``value`` (a JSON form) validated as ``value_type``: a pydantic model, a dataclass, a
    TypedDict, an enum, ``datetime``, ``Decimal``, ``bytes`` (from base64), ... as pydantic
    reads JSON; an attrs class field by field (pydantic does not know attrs)."""
    if isinstance(value_type, type) and attrs.has(value_type):
        if not isinstance(value, Mapping):
            raise pydantic.ValidationError.from_exception_data(
                value_type.__name__,
                [{"type": "dict_type", "loc": (), "input": value}],
            )
        fields = attrs.fields(attrs.resolve_types(value_type))
        return value_type(
            **{f.name: from_json(value[f.name], f.type) for f in fields if f.name in value}
        )
    return _adapter(value_type).validate_json(json.dumps([value]))[0]


@cache
def _adapter(value_type: Any) -> pydantic.TypeAdapter[Any]:
    # In a one-item list, so that the config (bytes from base64, as to_json writes them)
    # reaches a dataclass or TypedDict too; a pydantic model keeps its own.
    return pydantic.TypeAdapter(
        list[value_type], config=pydantic.ConfigDict(val_json_bytes="base64")
    )


def _encode(value: Any, where: str, *, strict: bool) -> Any:
    if isinstance(value, _SCALARS) and not isinstance(value, enum.Enum):
        return value
    if isinstance(value, enum.Enum):
        return _encode(value.value, where, strict=strict)
    if isinstance(value, Mapping):
        return {
            _key(k, where, strict): _encode(v, f"{where}[{k!r}]", strict=strict)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_encode(v, f"{where}[{i}]", strict=strict) for i, v in enumerate(value)]
    if isinstance(value, set | frozenset):
        items = [_encode(v, f"{where}[...]", strict=strict) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, pydantic.BaseModel):
        try:
            return value.model_dump(mode="json")
        except PydanticSerializationError as exc:
            if strict:
                raise UnserializableValueError(where, type(value).__name__, str(exc)) from None
            return repr(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _encode(getattr(value, f.name), f"{where}.{f.name}", strict=strict)
            for f in dataclasses.fields(value)
        }
    if attrs.has(type(value)):
        return {
            a.name: _encode(getattr(value, a.name), f"{where}.{a.name}", strict=strict)
            for a in attrs.fields(type(value))
        }
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal | uuid.UUID | PurePath):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, BaseException):
        return {"type": type(value).__name__, "message": str(value)}
    if strict:
        raise UnserializableValueError(where, type(value).__name__)
    return repr(value)


def _key(key: Any, where: str, strict: bool) -> str:
    """A mapping key as JSON text (as ``json.dumps`` writes numbers, booleans and None)."""
    if isinstance(key, str):
        return key
    if isinstance(key, enum.Enum):
        return _key(key.value, where, strict)
    if isinstance(key, bool | int | float) or key is None:
        return json.dumps(key)
    if isinstance(key, Decimal | uuid.UUID | PurePath | dt.date | dt.time):
        return str(_encode(key, where, strict=True))
    if strict:
        raise UnserializableValueError(f"{where} (a key)", type(key).__name__)
    return repr(key)
