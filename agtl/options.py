"""Generation options shared by every provider, validated where they are given."""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import attrs

from agtl.errors import InvalidArgumentError
from agtl.validation import check_count, type_name

__all__ = ["GenerationOptions"]


def _number(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgumentError(name, f"must be a number, not {type_name(value)}")
    number = float(value)
    if math.isnan(number) or not low <= number <= high:
        raise InvalidArgumentError(name, f"must be between {low:g} and {high:g}, got {value!r}")
    return number


def _stop(value: object) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(s, str) and s for s in items):
        raise InvalidArgumentError("stop", "must be a non-empty str or a list of non-empty str")
    return tuple(items)


_CACHE_KEY = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")


def _cache_key(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError("cache_key", f"must be a str, not {type_name(value)}")
    key = value.lower()
    if ".." in key or not _CACHE_KEY.fullmatch(key):
        raise InvalidArgumentError(
            "cache_key",
            "must be 1 to 128 characters of letters, digits, '.', '_' or '-', start with a "
            f"letter or digit and contain no '..'; got {value!r}",
        )
    return key


_FORMAT_TYPES = ("text", "json_object", "json_schema")
_SCHEMA_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})


def _response_format(value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or value.get("type") not in _FORMAT_TYPES:
        raise InvalidArgumentError(
            "response_format",
            "must be a mapping whose 'type' is one of "
            f"{', '.join(map(repr, _FORMAT_TYPES))}, e.g. "
            "{'type': 'json_schema', 'json_schema': {'name': ..., 'schema': {...}}}",
        )
    if value["type"] == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("schema"), Mapping):
            raise InvalidArgumentError(
                "response_format.json_schema",
                "must be a mapping with a 'schema' mapping (a JSON Schema), "
                "e.g. {'name': 'answer', 'schema': {'type': 'object', ...}}",
            )
        _check_schema(spec["schema"], "response_format.json_schema.schema")
    return value


def _check_schema(schema: Mapping[str, Any], where: str) -> None:
    """Catch the schema mistakes that would otherwise fail deep inside a provider."""
    try:
        json.dumps(schema)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(where, f"must be JSON-serializable ({exc})") from None
    kinds = schema.get("type")
    for kind in kinds if isinstance(kinds, list) else [kinds]:
        if kind is not None and kind not in _SCHEMA_TYPES:
            raise InvalidArgumentError(
                f"{where}.type",
                f"{kind!r} is not a JSON Schema type (one of {', '.join(sorted(_SCHEMA_TYPES))})",
            )
    for name, sub in (schema.get("properties") or {}).items():
        if not isinstance(sub, Mapping):
            raise InvalidArgumentError(f"{where}.properties.{name}", "must be a schema mapping")
        _check_schema(sub, f"{where}.properties.{name}")
    items = schema.get("items")
    if isinstance(items, Mapping):
        _check_schema(items, f"{where}.items")


_VALIDATORS: dict[str, Any] = {
    "max_tokens": lambda v: check_count("max_tokens", v, minimum=1),
    "temperature": lambda v: _number("temperature", v, 0.0, 2.0),
    "top_p": lambda v: _number("top_p", v, 0.0, 1.0),
    "top_k": lambda v: check_count("top_k", v),
    "stop": _stop,
    "seed": lambda v: check_count("seed", v),
    "presence_penalty": lambda v: _number("presence_penalty", v, -2.0, 2.0),
    "frequency_penalty": lambda v: _number("frequency_penalty", v, -2.0, 2.0),
    "response_format": _response_format,
    "cache_key": _cache_key,
}


@attrs.frozen
class GenerationOptions:
    """Sampling and output options; ``None`` leaves a value to the provider's default."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    response_format: Mapping[str, Any] | None = None
    #: Names a conversation whose model state a provider may keep and reuse between calls
    #: (the local provider's KV-cache sessions). Case-insensitive; stored lower-case.
    cache_key: str | None = None

    @classmethod
    def from_kwargs(cls, options: Mapping[str, object]) -> GenerationOptions:
        """Validate keyword options; unknown names and bad values raise at the call."""
        values: dict[str, Any] = {}
        for name, value in options.items():
            validator = _VALIDATORS.get(name)
            if validator is None:
                raise InvalidArgumentError(name, _unknown_option_hint(name))
            if value is not None:
                values[name] = validator(value)
        return cls(**values)

    def merged(self, override: GenerationOptions) -> GenerationOptions:
        """These options with every value ``override`` sets winning."""
        changes = {
            name: value
            for name, value in attrs.asdict(override, recurse=False).items()
            if value is not None
        }
        return attrs.evolve(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The options that are set, as plain values."""
        return {k: v for k, v in attrs.asdict(self, recurse=False).items() if v is not None}


def _unknown_option_hint(name: str) -> str:
    close = difflib.get_close_matches(name, list(_VALIDATORS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"is not a generation option{hint}; known options: {', '.join(_VALIDATORS)}"
