"""Which provider a worker builds for an execution: a serialisable spec, never a secret.

The spec travels in the workflow's input, so it lands in Temporal's history. It names a
provider (the bundled local model, an OpenAI-compatible server, a factory function, or a
fallback chain or hedge of other specs), its plain options and its shared limits; an API key
is read on the worker from the environment variable the spec names.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from agtl import _entry as entry
from agtl._limiter import SharedLimits
from agtl.errors import InvalidArgumentError
from agtl.provider import FallbackProvider, HedgedProvider, Provider
from agtl.validation import (
    check_count,
    check_optional_seconds,
    check_seconds,
    check_str,
    type_name,
)

__all__ = ["ProviderSpec"]

_KINDS = ("local", "openai", "factory", "fallback", "hedge")
#: The options of a fallback chain a spec can carry (``on=`` is code: not in a spec).
_FALLBACK_OPTIONS = {
    "first_token_timeout": check_optional_seconds,
    "max_wait": check_seconds,
    "failures": lambda name, value: check_count(name, value, minimum=1),
    "cooldown": check_seconds,
}
_SECRET = re.compile(r"key|token|secret|password|authorization|credential", re.IGNORECASE)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _json_mapping(name: str, value: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-safe copy of ``value``, refusing anything that looks like a secret."""
    try:
        data: dict[str, Any] = json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError) as error:
        raise InvalidArgumentError(name, f"must be JSON values: {error}") from None
    for key in data:
        if _SECRET.search(key):
            raise InvalidArgumentError(
                name,
                f"{key!r} looks like a secret, and the spec is stored in Temporal's history; "
                "put it in the worker's environment and name the variable (api_key_env=...)",
            )
    return data


@attrs.frozen
class ProviderSpec:
    """A provider described by data, built on the worker (:meth:`build`)."""

    kind: str
    settings: Mapping[str, Any] = attrs.field(factory=dict)
    #: Defaults for every call (``max_tokens``, ``temperature``, ...).
    options: Mapping[str, Any] = attrs.field(factory=dict)
    #: Limits the executions on one worker share (``Provider.with_limits``).
    limits: Mapping[str, int] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise InvalidArgumentError(
                "kind", f"must be one of {', '.join(_KINDS)}, not {self.kind!r}"
            )

    @classmethod
    def local(cls, *, model_path: str | None = None, **options: Any) -> ProviderSpec:
        """The bundled model (or a GGUF file at ``model_path`` on the worker) in-process."""
        settings = {} if model_path is None else {"model_path": check_str("model_path", model_path)}
        return cls("local", settings, _json_mapping("options", options))

    @classmethod
    def openai(
        cls,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = "OPENAI_API_KEY",
        **options: Any,
    ) -> ProviderSpec:
        """An OpenAI-compatible server. The key is read on the worker from ``api_key_env``
        (``None``: no key, for local servers)."""
        check_str("base_url", base_url)
        if not base_url.startswith(("http://", "https://")):
            raise InvalidArgumentError("base_url", f"must be an http(s) URL, not {base_url!r}")
        if api_key_env is not None and not _ENV_NAME.fullmatch(api_key_env):
            raise InvalidArgumentError(
                "api_key_env",
                f"must name an environment variable (like OPENAI_API_KEY), not {api_key_env!r}; "
                "the key itself never goes into the spec",
            )
        settings = {"base_url": base_url, "model": check_str("model", model)}
        settings["api_key_env"] = api_key_env  # type: ignore[assignment]
        return cls("openai", settings, _json_mapping("options", options))

    @classmethod
    def factory(cls, path: str, **arguments: Any) -> ProviderSpec:
        """``path`` ("package.module:function") called on the worker with ``arguments``
        (JSON values); it returns an :class:`~agtl.Provider`."""
        check_str("path", path)
        settings = {"path": path, "arguments": _json_mapping("arguments", arguments)}
        return cls("factory", settings)

    @classmethod
    def fallback(cls, primary: ProviderSpec, *others: ProviderSpec, **options: Any) -> ProviderSpec:
        """A :class:`~agtl.FallbackProvider` of these specs, in order; ``options`` are its
        ``first_token_timeout``, ``max_wait``, ``failures`` and ``cooldown``."""
        specs = _specs("primary", primary, *others)
        if len(specs) < 2:
            raise InvalidArgumentError("others", "a fallback needs at least two providers")
        for name, value in options.items():
            check = _FALLBACK_OPTIONS.get(name)
            if check is None:
                known = ", ".join(_FALLBACK_OPTIONS)
                raise InvalidArgumentError(name, f"is not a fallback option ({known})")
            check(name, value)
        return cls("fallback", {"providers": specs, "options": dict(options)})

    @classmethod
    def hedge(
        cls, primary: ProviderSpec, other: ProviderSpec, *, after: float | str
    ) -> ProviderSpec:
        """A :class:`~agtl.HedgedProvider`: ``other`` too when ``primary`` gave no output
        within ``after`` seconds (or ``"p95"``)."""
        if after != "p95":
            check_seconds("after", after)
        return cls("hedge", {"providers": _specs("primary", primary, other), "after": after})

    def with_limits(
        self,
        *,
        max_concurrent: int | None = None,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
    ) -> ProviderSpec:
        """This spec with limits its executions share on each worker (a worker builds each
        distinct spec once, so the limits hold per worker process, not across workers)."""
        given = {
            "max_concurrent": max_concurrent,
            "requests_per_minute": requests_per_minute,
            "tokens_per_minute": tokens_per_minute,
        }
        SharedLimits(**given)  # checked here, as the worker will
        return attrs.evolve(self, limits={k: v for k, v in given.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        data = {"kind": self.kind, "settings": dict(self.settings), "options": dict(self.options)}
        if self.limits:
            data["limits"] = dict(self.limits)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProviderSpec:
        if not isinstance(data, Mapping) or "kind" not in data:
            raise InvalidArgumentError("provider", f"is not a provider spec: {data!r}")
        return cls(
            data["kind"],
            dict(data.get("settings") or {}),
            dict(data.get("options") or {}),
            dict(data.get("limits") or {}),
        )

    def key(self) -> str:
        """Equal for equal specs: the worker builds each distinct provider once."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def build(self, environ: Mapping[str, str] = os.environ) -> Provider:
        """Make the provider (on the worker). Loading the local model takes seconds."""
        provider = _BUILDERS[self.kind](dict(self.settings), environ)
        if self.options:
            provider = provider.with_default_options(**self.options)
        if self.limits:
            provider = provider.with_limits(**self.limits)
        return provider

    def describe(self) -> str:
        settings = self.settings
        if self.kind == "openai":
            return f"openai {settings['model']} at {settings['base_url']}"
        if self.kind == "factory":
            return f"factory {settings['path']}"
        if self.kind in ("fallback", "hedge"):
            parts = [ProviderSpec.from_dict(p).describe() for p in settings["providers"]]
            return f"{self.kind}: " + " -> ".join(parts)
        return "local " + str(settings.get("model_path", "bundled model"))


def _local(settings: dict[str, Any], _environ: Mapping[str, str]) -> Provider:
    from agtl_llamacpp import LlamaCppProvider  # an optional distribution

    provider: Provider = LlamaCppProvider(**settings)
    return provider


def _openai(settings: dict[str, Any], environ: Mapping[str, str]) -> Provider:
    from agtl_openai import OpenAIProvider  # an optional distribution

    env_name = settings.get("api_key_env")
    key = environ.get(env_name) if env_name else None
    official = "api.openai.com" in settings["base_url"]
    if env_name and not key and official:
        raise InvalidArgumentError(
            "api_key_env", f"the worker's environment has no {env_name}: set it there"
        )
    provider = OpenAIProvider(api_key=key or "", base_url=settings["base_url"])
    return provider.with_default_model(settings["model"])


def _factory(settings: dict[str, Any], _environ: Mapping[str, str]) -> Provider:
    make = entry.load_object(settings["path"], "provider factory", files=False)
    if not callable(make):
        raise InvalidArgumentError("provider factory", f"{settings['path']} is not callable")
    provider: Any = make(**settings.get("arguments", {}))
    if not isinstance(provider, Provider):
        raise InvalidArgumentError(
            "provider factory",
            f"{settings['path']} returned {type_name(provider)}, not an agtl Provider",
        )
    built: Provider = provider
    return built


def _specs(name: str, *specs: ProviderSpec) -> list[dict[str, Any]]:
    for spec in specs:
        if not isinstance(spec, ProviderSpec):
            raise InvalidArgumentError(name, f"must be ProviderSpecs, not {type_name(spec)}")
    return [spec.to_dict() for spec in specs]


def _members(settings: dict[str, Any], environ: Mapping[str, str]) -> list[Provider]:
    return [ProviderSpec.from_dict(p).build(environ) for p in settings["providers"]]


def _fallback(settings: dict[str, Any], environ: Mapping[str, str]) -> Provider:
    return FallbackProvider(*_members(settings, environ), **settings.get("options", {}))


def _hedge(settings: dict[str, Any], environ: Mapping[str, str]) -> Provider:
    primary, other = _members(settings, environ)
    return HedgedProvider(primary, other, after=settings["after"])


_BUILDERS: dict[str, Callable[[dict[str, Any], Mapping[str, str]], Provider]] = {
    "local": _local,
    "openai": _openai,
    "factory": _factory,
    "fallback": _fallback,
    "hedge": _hedge,
}
