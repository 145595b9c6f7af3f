"""The chat page in a real headless browser against a served workflow: it sends to the
workflow, shows its events, and resumes a dropped event stream with Last-Event-ID."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.serve.conftest import DEADLINE, Server, start_server
from tests.serve.test_real_model import _ask, _browser, _done

FLOWS = "tests/serve/flows.py"


class DroppingProxy:
    """A TCP proxy in front of the server whose open connections can be cut at will (what a
    flaky network or a restarted load balancer does to a long event stream)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.lock = threading.Lock()
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.pairs.append((client, upstream))
                self.accepted += 1
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def drop(self) -> int:
        """Cut every open connection; how many there were."""
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for end in pair:
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()
        return len(pairs)

    def close(self) -> None:
        self.listener.close()
        self.drop()


@pytest.fixture
def served() -> Iterator[tuple[Server, DroppingProxy]]:
    server = start_server(f"{FLOWS}:counted")
    proxy = DroppingProxy(server.port)
    yield server, proxy
    proxy.close()
    if server.process.poll() is None:
        assert server.stop() == 0


def test_the_page_sends_to_the_workflow_and_resumes_a_dropped_stream(
    served: tuple[Server, DroppingProxy], tmp_path: Path
) -> None:
    server, proxy = served
    page = _browser(tmp_path / "profile")
    try:
        page.get(f"http://127.0.0.1:{proxy.port}/")
        WebDriverWait(page, DEADLINE).until(
            lambda p: p.find_element(By.ID, "workflow-name").text == "counted"
        )
        reply = _ask(page, '{"n": 150}')
        text = reply.find_element(By.CLASS_NAME, "text")
        WebDriverWait(page, DEADLINE).until(lambda _p: "w20 " in text.text)
        assert proxy.drop() >= 1  # the event stream is cut mid-reply
        WebDriverWait(page, DEADLINE).until(lambda _p: "w60 " in text.text)
        assert proxy.drop() >= 1  # and again
        _done(page, reply)
        expected = "".join(f"w{i} " for i in range(150))
        assert text.text.strip() == expected.strip()  # every event once: no gap, no repeat
        assert "TTFT" not in reply.find_element(By.CLASS_NAME, "summary").text  # no LLM call
        assert proxy.accepted >= 3  # it reconnected
        execution = reply.get_attribute("data-execution")
        assert server.outcome(str(execution))["status"] == "succeeded"
    finally:
        page.quit()


@contextlib.contextmanager
def page_serving(workflow: str, tmp_path: Path) -> Iterator[WebDriver]:
    """The chat page of ``agtl serve`` running ``workflow`` (of the serve flows), in chromium,
    once it shows that it sends to the workflow; both stopped at the end."""
    server = start_server(f"{FLOWS}:{workflow}")
    page = _browser(tmp_path / "profile")
    try:
        page.get(f"http://127.0.0.1:{server.port}/")
        WebDriverWait(page, DEADLINE).until(
            lambda p: p.find_element(By.ID, "workflow-name").text == workflow
        )
        yield page
    finally:
        page.quit()
        if server.process.poll() is None:
            assert server.stop() == 0


def test_the_page_shows_approvals_and_the_model_hears_the_decision(tmp_path: Path) -> None:
    with page_serving("pay", tmp_path) as page:
        denied = _ask(page, "pay the bill")
        box = WebDriverWait(page, DEADLINE).until(
            lambda _p: denied.find_element(By.CLASS_NAME, "approval")
        )
        assert 'approve transfer {"amount":500}?' in box.text
        box.find_element(By.CLASS_NAME, "deny").click()
        _done(page, denied)
        text = denied.find_element(By.CLASS_NAME, "text").text
        assert text == "the tool said: The user denied this call: denied in the chat page"

        approved = _ask(page, "pay the bill")
        box = WebDriverWait(page, DEADLINE).until(
            lambda _p: approved.find_element(By.CLASS_NAME, "approval")
        )
        box.find_element(By.CLASS_NAME, "approve").click()
        _done(page, approved)
        assert approved.find_element(By.CLASS_NAME, "text").text == "the tool said: sent 500"
        assert "approved" in box.text


def test_the_page_answers_the_workflows_question(tmp_path: Path) -> None:
    with page_serving("question", tmp_path) as page:
        reply = _ask(page, "go")
        box = WebDriverWait(page, DEADLINE).until(
            lambda _p: reply.find_element(By.CLASS_NAME, "question")
        )
        assert "How many?" in box.text
        field = box.find_element(By.CLASS_NAME, "answer")
        field.send_keys("three")  # not an int: refused, the question stays open
        box.find_element(By.CLASS_NAME, "provide").click()
        WebDriverWait(page, DEADLINE).until(lambda _p: "does not fit" in box.text)
        field.clear()
        field.send_keys("3")
        box.find_element(By.CLASS_NAME, "provide").click()
        _done(page, reply)
        assert reply.find_element(By.CLASS_NAME, "text").text == "6 halves"
