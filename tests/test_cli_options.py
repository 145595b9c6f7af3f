"""The command line as a new user meets it: every bad flag of every subcommand is one line in
one style (the flag, what is wrong, exit 2) before anything loads; workflows of both shapes
run; ``--json`` is pure JSON; a broken workflow file is one line naming the user's code."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
AGTL = [sys.executable, "-m", "agtl.cli"]

#: A workflow file with its own scripted provider: nothing loads a model.
FLOWS = """
import dataclasses
import agtl
from agtl.testing import ScriptedProvider

agtl_provider = ScriptedProvider("scripted answer")


@dataclasses.dataclass
class Report:
    topic: str
    words: int


async def plain(session):
    print("the workflow prints this")
    reply = await session.generate_text(prompt="hi")
    return Report("none", len(reply.text.split()))


async def with_input(session, topic):
    return Report(topic["name"], 2)


async def three(session, a, b):
    return None


async def events(session):
    yield session.emit("note", "hello")
    yield await session.done(Report("gen", 1))
"""


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    path = tmp_path / "flows.py"
    path.write_text(textwrap.dedent(FLOWS))
    return path


def agtl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AGTL, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


BAD_FLAGS = [
    (["run", "{flows}:plain", "--timeout", "-5"], "--timeout must be a positive number"),
    (["run", "{flows}:plain", "--timeout", "nan"], "--timeout must be a positive number"),
    (["run", "{flows}:plain", "--temperature", "9"], "--temperature must be between 0 and 2"),
    (["run", "{flows}:plain", "--input", "{{nope"], "--input: not JSON"),
    (["run", "{flows}:plain", "--input-file", "absent.json"], "--input-file absent.json: no such"),
    (["run", "{flows}:plain", "--log-summaries", "/proc/x"], "--log-summaries /proc/x: cannot"),
    (["run", "{flows}:plain", "--model-path", "absent.gguf"], "--model-path absent.gguf: no such"),
    (["chat", "--max-tokens", "0"], "--max-tokens must be at least 1"),
    (["chat", "--temperature", "-1"], "--temperature must be between 0 and 2"),
    (["serve", "--port", "99999"], "--port must be a TCP port from 1 to 65535"),
    (["serve", "--host", "no such host!"], "--host no such host!: not an address"),
    (["serve", "--grace", "-1"], "--grace must be a number of seconds >= 0"),
    (["serve", "--max-running", "0"], "--max-running must be at least 1"),
    (["serve", "--conversations", "{flows}"], "--conversations"),
    (["worker", "--concurrency", "0"], "--concurrency must be at least 1"),
    (["worker", "--drain", "-1"], "--drain must be a number of seconds >= 0"),
    (["report", "x.jsonl", "--html", "/proc/x/r.html"], "--html /proc/x/r.html: no such directory"),
]


@pytest.mark.parametrize(("args", "message"), BAD_FLAGS)
def test_every_bad_flag_is_one_line_before_anything_loads(
    flows: Path, args: list[str], message: str
) -> None:
    done = agtl(*(a.format(flows=flows) for a in args), timeout=30)
    assert done.returncode == 2, done.stderr
    assert message.format(flows=flows) in done.stderr
    assert "Traceback" not in done.stderr
    assert "Loading the local model" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1


def test_both_workflow_shapes_run_and_json_is_pure(flows: Path) -> None:
    done = agtl("run", f"{flows}:plain", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)  # the workflow's own print went to stderr
    assert data["value"] == {"topic": "none", "words": 2}
    assert "the workflow prints this" in done.stderr
    done = agtl("run", f"{flows}:with_input", "--input", '{"name": "trio"}', "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["value"] == {"topic": "trio", "words": 2}
    done = agtl("run", f"{flows}:events", "--json", "-v")  # -v after the subcommand
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["value"] == {"topic": "gen", "words": 1}


def test_a_function_of_neither_shape_is_refused_at_start(flows: Path) -> None:
    done = agtl("run", f"{flows}:three")
    assert done.returncode == 2
    assert "takes the parameters (session, a, b)" in done.stderr
    assert "fn(session) or fn(session, input)" in done.stderr


def test_a_broken_workflow_file_is_one_line_naming_the_users_code(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("async def fn(session):\n    return (\n")
    done = agtl("run", f"{broken}:fn")
    assert done.returncode == 2
    assert f"{broken} does not compile: {broken}, line" in done.stderr
    assert "Traceback" not in done.stderr
    raising = tmp_path / "raising.py"
    raising.write_text("import json\n\nSETTINGS = json.loads('{')\n")
    done = agtl("run", f"{raising}:fn")
    assert done.returncode == 2
    assert "raised JSONDecodeError as it loaded" in done.stderr
    assert f"at {raising}, line 3: SETTINGS = json.loads('{{')" in done.stderr
    assert "Traceback" not in done.stderr


def test_run_shows_tool_calls_and_status(tmp_path: Path) -> None:
    path = tmp_path / "tools_flow.py"
    path.write_text(
        textwrap.dedent(
            """
            import agtl
            from agtl.testing import Reply, ScriptedProvider

            agtl_provider = ScriptedProvider(
                Reply("", tool_calls=[agtl.ToolCallRequest("c1", "double", {"x": 2})]),
                Reply("four"),
            )


            @agtl.tool
            async def double(x: int) -> int:
                '''Twice x.'''
                return 2 * x


            async def flow(session):
                async with session.stream_text(prompt="go", tools=[double]) as stream:
                    async for part in stream.parts():
                        yield session.emit(type(part).__name__, part)
                yield await session.done(stream.result.text)
            """
        )
    )
    done = agtl("run", f"{path}:flow")
    assert done.returncode == 0, done.stderr
    assert "-> double(" in done.stdout
    assert "<- double ok" in done.stdout
    assert "TextPart(" not in done.stdout  # text parts print inline, not as reprs
    assert "tool double ok" in done.stdout


APPROVALS = '''
import agtl
from agtl.testing import Reply, ScriptedProvider


def reply(request):
    if request.messages[-1].role is agtl.Role.TOOL:
        return Reply("the tool said: " + request.messages[-1].content)
    return Reply("", tool_calls=[agtl.ToolCallRequest("t1", "get_weather", {"city": "Paris"})])


agtl_provider = ScriptedProvider(respond=reply)


@agtl.tool(needs_approval=True)
async def get_weather(city: str) -> str:
    """The weather."""
    return "sunny in " + city


async def ask(session):
    return (await session.generate_text(prompt="weather?", tools=[get_weather])).text
'''


@pytest.mark.parametrize(
    ("stdin", "flags", "value", "said"),
    [
        (
            "y\n",
            [],
            "the tool said: sunny in Paris",
            'approve get_weather {"city": "Paris"}? [y/N]',
        ),
        ("n\n", [], "the tool said: The user denied this call: denied at the terminal", "[y/N]"),
        ("", [], "the tool said: The user denied this call: no terminal answer", "[y/N]"),
        ("", ["--approve-all"], "the tool said: sunny in Paris", "(--approve-all)"),
    ],
)
def test_run_asks_on_the_terminal_before_a_tool_that_needs_approval(
    tmp_path: Path, stdin: str, flags: list[str], value: str, said: str
) -> None:
    path = tmp_path / "weather.py"
    path.write_text(textwrap.dedent(APPROVALS))
    done = subprocess.run(
        [*AGTL, "run", f"{path}:ask", "--json", *flags],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["value"] == value
    assert said in done.stderr


QUESTIONS = """
async def ask(session):
    name = await session.request_input("Your name?")
    age = await session.request_input("Your age?", output_type=int)
    return f"{name} is {age}"
"""


@pytest.mark.parametrize(
    ("stdin", "code", "value"),
    [
        ("Ada\n41\n", 0, "Ada is 41"),
        ("42\nforty\n41\n", 0, "42 is 41"),  # "42" fits str as text; "forty" is asked again
        ("Ada\n", 3, None),  # no answer to the second question: canceled
    ],
)
def test_run_asks_the_workflows_questions_on_the_terminal(
    tmp_path: Path, stdin: str, code: int, value: str | None
) -> None:
    path = tmp_path / "questions.py"
    path.write_text(
        "from agtl.testing import ScriptedProvider\nagtl_provider = ScriptedProvider()\n"
        + textwrap.dedent(QUESTIONS)
    )
    done = subprocess.run(
        [*AGTL, "run", f"{path}:ask", "--json"],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == code, done.stderr
    record = json.loads(done.stdout)
    assert record["value"] == value
    assert "Your name?" in done.stderr
    if code == 3:
        assert record["cancel"]["reason"] == "no terminal answer"
