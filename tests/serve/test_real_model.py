"""`agtl serve` on the bundled model: the API, and the chat page in a real headless browser."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.local import system_browser
from tests.serve.conftest import DEADLINE, ROOT, Server, start_server

ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    conversations = tmp_path_factory.mktemp("conversations")
    running = start_server(
        "examples/serve_app.py:research",
        "--temperature",
        "0",
        "--conversations",
        str(conversations),
    )
    yield running
    if running.process.poll() is None:
        assert running.stop() == 0


def test_the_example_answers_over_http(server: Server) -> None:
    execution_id = server.start({"question": "What is the capital of France?"})
    events = server.events(execution_id).all()
    assert events[0].type == "status"
    text = "".join(e.data for e in events if e.type == "text")
    assert "Paris" in text
    assert events[-1].type == "end"
    record = server.outcome(execution_id)
    assert record["status"] == "succeeded"
    assert record["summary"]["llm_calls"][0]["usage"]["provenance"] == "counted"


def test_stop_over_http_stops_the_model(server: Server) -> None:
    execution_id = server.start({"question": "Write a very long story about a dragon."})
    stream = server.events(execution_id)
    seen = 0
    while seen < 5:
        event = stream.next()
        assert event is not None
        seen += event.type == "text"
    pressed = time.monotonic()
    reply = server.request("POST", f"/executions/{execution_id}/cancel", {"reason": "Stop"})
    assert reply.status == 202
    rest = stream.all()
    stopped = time.monotonic() - pressed
    assert rest[-1].type == "end"
    assert rest[-1].data["status"] == "canceled"
    assert stopped < 5  # generous: the bench measures it; a hang would take the deadline
    record = server.outcome(execution_id)
    call = record["summary"]["llm_calls"][0]
    assert call["stop_reason"] == "cancelled"
    assert call["usage"]["output_tokens"] < 200  # max_tokens was not reached
    assert len(record["partial"]) > 10


def _browser(profile: Path) -> WebDriver:
    browser = system_browser()
    driver = shutil.which("chromedriver")
    assert driver is not None, "no chromedriver on PATH (make test installs chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1000,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(driver), options=options)


def _ask(page: WebDriver, question: str) -> WebElement:
    """Type a question and press Enter; the reply bubble it makes."""
    before = len(page.find_elements(By.CSS_SELECTOR, ".assistant"))
    box = page.find_element(By.ID, "prompt")
    box.send_keys(question)
    box.send_keys(Keys.ENTER)
    wait = WebDriverWait(page, DEADLINE)
    wait.until(lambda p: len(p.find_elements(By.CSS_SELECTOR, ".assistant")) > before)
    return page.find_elements(By.CSS_SELECTOR, ".assistant")[-1]


def _done(page: WebDriver, reply: WebElement) -> None:
    WebDriverWait(page, DEADLINE).until(lambda _p: reply.get_attribute("data-done") == "true")


def test_the_chat_page_streams_stops_and_keeps_the_partial(server: Server, tmp_path: Path) -> None:
    page = _browser(tmp_path / "profile")
    try:
        page.get(f"http://127.0.0.1:{server.port}/#conversation=browser-test")
        # The server runs a workflow: the page sends to it, unless told to chat.
        WebDriverWait(page, DEADLINE).until(
            lambda p: p.find_element(By.ID, "workflow-name").text == "research"
        )
        researched = _ask(page, '{"question": "What is the capital of France?"}')
        _done(page, researched)
        assert "Paris" in researched.find_element(By.CLASS_NAME, "text").text
        assert "status:" in researched.find_element(By.CLASS_NAME, "event").text
        page.find_element(By.ID, "use-workflow").click()  # now chat with the model

        first = _ask(page, "What is the capital of France?")
        _done(page, first)
        assert "Paris" in first.find_element(By.CLASS_NAME, "text").text
        assert "TTFT" in first.find_element(By.CLASS_NAME, "summary").text

        story = _ask(page, "Write a very long story about a dragon and a princess.")
        WebDriverWait(page, DEADLINE).until(
            lambda _p: len(story.find_element(By.CLASS_NAME, "text").text) > 40
        )  # the reply is streaming into the page
        page.find_element(By.ID, "stop").click()
        _done(page, story)
        assert "partial" in (story.get_attribute("class") or "")
        assert "stopped: Stop pressed" in story.find_element(By.CLASS_NAME, "mark").text
        assert (
            "cancelled by handle: Stop pressed" in story.find_element(By.CLASS_NAME, "summary").text
        )
        kept = story.find_element(By.CLASS_NAME, "text").text

        last = _ask(page, "What is the capital of Italy?")
        _done(page, last)
        assert last.find_element(By.CLASS_NAME, "text").text
        assert "partial" not in (last.get_attribute("class") or "")
        ARTIFACTS.mkdir(exist_ok=True)
        page.save_screenshot(str(ARTIFACTS / "serve-chat-page.png"))
    finally:
        page.quit()

    history = server.request("GET", "/conversations/browser-test").body
    entries = [i for i in history["items"] if i["kind"] == "entry" and i["role"] != "system"]
    assert [(e["role"], e["partial"]) for e in entries] == [
        ("user", False),
        ("assistant", False),
        ("user", False),
        ("assistant", True),  # the stopped reply, in the history the next question was sent with
        ("user", False),
        ("assistant", False),
    ]
    assert entries[3]["content"].strip() == kept.strip()
