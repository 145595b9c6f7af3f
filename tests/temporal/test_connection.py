"""Where Temporal is: its client configuration (profile file, TEMPORAL_* variables), then the
arguments."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import agtl
from agtl import temporal
from agtl.temporal import ProviderSpec, TemporalConfigError, connect_options
from agtl.temporal.testing import WorkerProcess
from tests.local import free_port
from tests.temporal.conftest import ROOT
from tests.temporal.test_temporal import history_text, until

KEY = "tmprl-agtl-test-3c1d9e-DO-NOT-LEAK"

PROFILES = """\
[profile.default]
address = "file-host:7233"
namespace = "from-file"
api_key = "key-from-file"

[profile.cloud]
address = "cloud-host:7233"
namespace = "cloud-ns"
"""


@pytest.fixture(autouse=True)
def no_temporal_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TEMPORAL_* variable of the machine, and no config file in the home directory."""
    for name in list(os.environ):
        if name.startswith("TEMPORAL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))


def test_with_nothing_configured_it_is_the_local_default() -> None:
    assert connect_options() == {"target_host": "127.0.0.1:7233", "namespace": "default"}


def test_the_profile_file_then_the_variables_then_the_arguments(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "temporal.toml"
    config.write_text(PROFILES)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(config))

    from_file = connect_options()
    assert from_file["target_host"] == "file-host:7233"
    assert from_file["namespace"] == "from-file"
    assert from_file["api_key"] == "key-from-file"
    assert from_file["tls"]  # an API key turns TLS on
    assert connect_options(profile="cloud")["target_host"] == "cloud-host:7233"

    monkeypatch.setenv("TEMPORAL_NAMESPACE", "from-env")
    monkeypatch.setenv("TEMPORAL_TLS", "false")
    from_env = connect_options()
    assert (from_env["target_host"], from_env["namespace"]) == ("file-host:7233", "from-env")
    assert not from_env["tls"]

    given = connect_options("given:1", namespace="given-ns")
    assert (given["target_host"], given["namespace"]) == ("given:1", "given-ns")

    monkeypatch.setenv("TEMPORAL_PROFILE", "cloud")
    assert connect_options()["target_host"] == "cloud-host:7233"


@pytest.mark.parametrize(
    ("variables", "profile", "message"),
    [
        ({}, "nope", "Profile 'nope' not found"),
        ({"TEMPORAL_CONFIG_FILE": "missing/temporal.toml"}, None, "missing/temporal.toml: no such"),
        ({"TEMPORAL_CONFIG_FILE": "{broken}"}, None, "client configuration: .*TOML"),
        (
            {
                "TEMPORAL_TLS_CLIENT_CERT_PATH": "missing/client.pem",
                "TEMPORAL_TLS_CLIENT_KEY_PATH": "missing/client.key",
            },
            None,
            "names missing/client.pem, which cannot be read",
        ),
    ],
)
def test_a_wrong_configuration_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    variables: dict[str, str],
    profile: str | None,
    message: str,
) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[profile.default\naddress = ")
    monkeypatch.chdir(tmp_path)
    for name, value in variables.items():
        monkeypatch.setenv(name, value.replace("{broken}", str(broken)))
    with pytest.raises(TemporalConfigError, match=message):
        connect_options(profile=profile)
    with pytest.raises(agtl.InvalidArgumentError, match="address"):
        connect_options(7233)  # type: ignore[arg-type]


def test_an_api_key_never_reaches_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("TEMPORAL_API_KEY", KEY)
    with pytest.raises(temporal.TemporalUnavailableError) as caught:
        asyncio.run(temporal.connect())
    message = str(caught.value)
    assert "TLS is on" in message  # the API key turned it on: the hint says how to turn it off
    assert KEY not in message
    assert KEY not in repr(caught.value)


def test_agtl_worker_names_the_address_and_hides_the_key(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "agtl.cli", "worker"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "TEMPORAL_ADDRESS": address, "TEMPORAL_API_KEY": KEY},
    )
    assert done.returncode == 2
    assert f"cannot reach Temporal at {address}" in done.stderr
    assert "TEMPORAL_TLS=false" in done.stderr  # the hint for a server without TLS
    assert "Traceback" not in done.stderr
    assert KEY not in done.stdout + done.stderr


def test_the_variables_reach_the_server(
    monkeypatch: pytest.MonkeyPatch, temporal_address: str
) -> None:
    # The dev server has no TLS and ignores the key: the client still sends it as Temporal
    # Cloud expects (in a header), and nothing agtl keeps holds it.
    monkeypatch.setenv("TEMPORAL_ADDRESS", temporal_address)
    monkeypatch.setenv("TEMPORAL_API_KEY", KEY)
    monkeypatch.setenv("TEMPORAL_TLS", "false")

    async def main() -> tuple[str, str]:
        client = await temporal.connect()
        try:
            await client.count_workflows()  # a real round trip
            return client.service_client.config.target_host, client.namespace
        finally:
            del client
            gc.collect()

    assert asyncio.run(main()) == (temporal_address, "default")


async def listed(client: Any, query: str, count: int) -> None:
    """Wait until Temporal's list shows ``count`` executions (it catches up a moment later)."""

    async def there() -> bool:
        return len(await temporal.gather(client, query=query)) == count

    await until(there, 30, f"{count} execution(s) to be listed")


def test_agtl_worker_and_report_find_the_server_from_the_environment(
    temporal_address: str, tmp_path: Path
) -> None:
    settings = {
        "TEMPORAL_ADDRESS": temporal_address,
        "TEMPORAL_API_KEY": KEY,
        "TEMPORAL_TLS": "false",
    }
    queue = f"agtl-test-{uuid.uuid4().hex[:8]}"
    mine = f"TaskQueue = '{queue}'"
    worker = WorkerProcess.start(
        None,  # no --address: TEMPORAL_ADDRESS says where
        queue,
        concurrency=1,
        paths=[ROOT],
        env=settings,
        arguments=["--heartbeat-every", "0.2"],
    )
    try:
        ready = worker.wait_for_line("serving task queue", 1)
        assert f"at {temporal_address}" in ready

        async def main() -> tuple[agtl.Result[Any], str]:
            client = await temporal.connect(temporal_address)
            try:
                handle = await temporal.submit(
                    client,
                    "tests.temporal.flows:answer",
                    {"prompt": "hello"},
                    provider=ProviderSpec.factory("tests.temporal.flows:scripted"),
                    task_queue=queue,
                    timeout=60,
                )
                result = await handle.result()
                history = await handle.workflow.fetch_history()
                await listed(client, mine, 1)
                return result, history_text(history.to_json_dict())
            finally:
                del client
                gc.collect()

        result, history = asyncio.run(main())
    finally:
        worker.stop(10)
    assert result.succeeded, result
    assert result.value == "echo: hello"
    assert KEY not in history
    assert KEY not in "\n".join(worker.output)

    report = subprocess.run(
        [sys.executable, "-m", "agtl.cli", "report", "--temporal", "--query", mine],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **settings},
    )
    assert report.returncode == 0, report.stderr
    assert f"in Temporal at {temporal_address}" in report.stdout
    assert KEY not in report.stdout + report.stderr
