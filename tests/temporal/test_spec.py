"""Provider specs and Results from data, without a server."""

from __future__ import annotations

import json

import pytest

import agtl
from agtl.temporal import ProviderSpec, result_of
from agtl.testing import ScriptedProvider


def test_a_spec_round_trips_through_json_and_builds_on_the_worker() -> None:
    spec = ProviderSpec.factory("tests.temporal.flows:scripted", delay=0.5, chunks=3)
    again = ProviderSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert again.key() == spec.key()
    provider = again.build()
    assert isinstance(provider, ScriptedProvider)


def test_options_become_the_built_providers_defaults() -> None:
    spec = ProviderSpec.openai("http://127.0.0.1:9/v1", "smollm2", api_key_env=None, temperature=0)
    provider = spec.build(environ={})
    assert provider.default_model == "smollm2"
    assert provider.default_options.temperature == 0


def test_the_key_is_read_from_the_named_variable_and_never_kept_in_the_spec() -> None:
    spec = ProviderSpec.openai("https://api.openai.com/v1", "gpt-4o-mini", api_key_env="MY_KEY")
    assert "sk-" not in json.dumps(spec.to_dict())
    with pytest.raises(agtl.InvalidArgumentError, match="no MY_KEY"):
        spec.build(environ={})
    assert spec.build(environ={"MY_KEY": "sk-test"}).default_model == "gpt-4o-mini"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ProviderSpec.openai("http://h/v1", "m", api_key="sk-1"), "looks like a secret"),
        (lambda: ProviderSpec.local(auth_token="t"), "looks like a secret"),
        (lambda: ProviderSpec.factory("m:f", password="p"), "looks like a secret"),
        (lambda: ProviderSpec.openai("http://h/v1", "m", api_key_env="sk-live-1"), "variable"),
        (lambda: ProviderSpec.openai("ftp://h", "m"), "http"),
        (lambda: ProviderSpec.local(temperature=float("nan")), "JSON"),
        (lambda: ProviderSpec("gpu"), "one of local, openai, factory, fallback, hedge"),
        (lambda: ProviderSpec.fallback(ProviderSpec.local()), "at least two"),
        (lambda: ProviderSpec.fallback(ProviderSpec.local(), "x"), "ProviderSpecs"),  # type: ignore[arg-type]
        (lambda: ProviderSpec.fallback(*[ProviderSpec.local()] * 2, on="x"), "not a fallback"),
        (lambda: ProviderSpec.fallback(*[ProviderSpec.local()] * 2, max_wait=-1), "max_wait"),
        (lambda: ProviderSpec.hedge(*[ProviderSpec.local()] * 2, after="p99"), "after"),
        (lambda: ProviderSpec.local().with_limits(max_concurrent=0), "max_concurrent"),
        (lambda: ProviderSpec.from_dict({"settings": {}}), "not a provider spec"),
    ],
)
def test_bad_specs_fail_when_made(make: object, message: str) -> None:
    with pytest.raises(agtl.InvalidArgumentError, match=message):
        make()  # type: ignore[operator]


def test_a_factory_that_returns_no_provider_is_refused() -> None:
    with pytest.raises(agtl.InvalidArgumentError, match="not an agtl Provider"):
        ProviderSpec.factory("json:dumps", obj=1).build()


def test_unfinished_executions_become_results() -> None:
    timed_out = result_of(
        "wf-1", {"unfinished": {"status": "canceled", "source": "timeout", "reason": "late"}}
    )
    assert timed_out.status is agtl.Status.CANCELED
    assert timed_out.cancel is not None
    assert (timed_out.cancel.source, timed_out.cancel.reason) == (agtl.CancelSource.TIMEOUT, "late")
    assert timed_out.summary.llm_call_count == 0
    failed = result_of("wf-2", {"unfinished": {"status": "failed", "type": "X", "message": "m"}})
    assert failed.status is agtl.Status.FAILED
    assert isinstance(failed.error, agtl.RemoteError)
    assert (failed.error.type_name, str(failed.error)) == ("X", "m")


def test_a_fallback_chain_a_hedge_and_limits_are_data_too() -> None:
    first = ProviderSpec.factory("tests.temporal.flows:scripted").with_limits(max_concurrent=2)
    second = ProviderSpec.openai("http://127.0.0.1:9/v1", "smollm2", api_key_env=None)
    chain = ProviderSpec.fallback(first, second, first_token_timeout=5, failures=3)
    again = ProviderSpec.from_dict(json.loads(json.dumps(chain.to_dict())))
    assert again == chain
    built = again.build(environ={})
    assert isinstance(built, agtl.FallbackProvider)
    inner, outer = built.providers
    assert inner.limits is not None
    assert inner.limits.max_concurrent == 2
    assert outer.default_model == "smollm2"
    assert chain.describe() == (
        "fallback: factory tests.temporal.flows:scripted -> openai smollm2 at http://127.0.0.1:9/v1"
    )
    hedged = ProviderSpec.hedge(first, second, after="p95").build(environ={})
    assert isinstance(hedged, agtl.HedgedProvider)
    assert hedged.after == 1.0
