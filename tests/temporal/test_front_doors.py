"""`agtl run`, `agtl serve` and `agtl.temporal.submit` load a workflow the same way: the same
bad name gets the same message from all three."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

import agtl
from agtl import temporal
from agtl.temporal import ProviderSpec
from tests.temporal.conftest import ROOT
from tests.temporal.test_temporal import with_client

BAD = [
    ("tests.temporal.flows:missing", "tests.temporal.flows has no 'missing' (workflows in it: "),
    (
        "tests.temporal.flows:not_async",
        "'tests.temporal.flows:not_async' is not an async function or async generator taking a "
        "session (and the input, if it has a second parameter)",
    ),
    ("no_such_module_here:fn", "cannot import 'no_such_module_here' for "),
    ("tests.temporal.flows", "expected "),
]


def _cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "agtl.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done
    assert done.stderr.startswith("error: "), done.stderr
    # The terminal may wrap the line: the message is everything before the hint.
    message = done.stderr.removeprefix("error: ").split("\nhint: ")[0]
    return " ".join(message.split())


@pytest.mark.parametrize(("target", "message"), BAD, ids=[t for t, _ in BAD])
def test_the_same_bad_workflow_gets_the_same_message_everywhere(
    temporal_address: str, target: str, message: str
) -> None:
    ran = _cli("run", target)
    served = _cli("serve", target, "--port", "1")

    async def submit(client: Any) -> str:
        with pytest.raises(agtl.InvalidArgumentError) as info:
            await temporal.submit(
                client, target, provider=ProviderSpec.factory("tests.temporal.flows:scripted")
            )
        assert info.value.argument == "workflow"
        return info.value.problem

    submitted = with_client(temporal_address, submit)
    assert message in ran, ran
    if target == "tests.temporal.flows":
        return  # the expected form differs: a file is fine on the command line, not on Temporal
    assert ran == served == submitted
