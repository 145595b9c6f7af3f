"""Tools from Model Context Protocol servers, cancelled the structured way (``agtl[mcp]``).

``MCPServer.stdio(...)`` and ``MCPServer.http(...)`` are async context managers holding one MCP
session (the official ``mcp`` SDK, which runs on anyio and so under trio). ``await
server.tools()`` turns the server's tools into :class:`agtl.Tool` values for
``session.generate_text(tools=...)``, with the server's own schemas and descriptions.

A tool call runs in the execution's scope like any tool: a cancel of the execution (any
source) or the tool's ``timeout`` cancels the request, the SDK sends the protocol's
``notifications/cancelled`` for it, the call ends at once (status ``cancelled`` or
``timeout``), and the MCP session stays usable. An error result from the server, a crash, or
a broken connection ends that call with a tool error the model is told about (or
:class:`~agtl.ToolError`, with ``tool_errors="raise"``); never a hang.

The other way round, :func:`serve_workflows` offers agtl workflows as the tools of an MCP
server (``agtl mcp-serve``): each call an execution, the client's cancel its cancel.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import IO, Any, Final, Self, TextIO, cast

import attrs
import jsonschema
import trio
from mcp import ClientSession
from mcp import MCPError as SDKError
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import PaginatedRequestParams

from agtl._mcp_compat import create_mcp_http_client
from agtl._mcp_serve import serve_workflows
from agtl.errors import AgtlError, InvalidArgumentError
from agtl.guardrails import Guardrail, check_guardrails
from agtl.session import Session
from agtl.tools import Tool, progress_hook
from agtl.validation import check_optional_seconds, check_seconds, check_str, require_trio

__all__ = ["MCPServer", "MCPServerError", "MCPToolError", "Progress", "serve_workflows"]

_NAME: Final = re.compile(r"[^A-Za-z0-9_-]")

#: ``on_progress(session, tool, progress, total, message)``, called for each progress
#: notification the server sends while one of its tools runs.
Progress = Callable[[Session, str, float, float | None, str | None], Any]


class MCPServerError(AgtlError):
    """An MCP server could not be started, did not answer, or went away."""


class MCPToolError(Exception):
    """An MCP tool answered with an error result; its text is what the model is told."""


class MCPServer:
    """One MCP server and the session with it; use ``async with``. See the module docstring."""

    def __init__(
        self,
        label: str,
        transport: Callable[[contextlib.AsyncExitStack, IO[str]], Awaitable[Any]],
        *,
        secrets: Sequence[str] = (),
        startup_timeout: float = 30.0,
        http_refusals: list[int] | None = None,
    ) -> None:
        self.label = label
        self._transport = transport
        self._secrets = tuple(s for s in secrets if s)
        # HTTP transport: the error statuses the server answered with, to explain a failure.
        self._http_refusals = http_refusals if http_refusals is not None else []
        self._startup_timeout = check_seconds("startup_timeout", startup_timeout)
        self._stack: contextlib.AsyncExitStack | None = None
        self._session: ClientSession | None = None
        self._stderr: IO[str] | None = None

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def stdio(
        cls,
        command: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        startup_timeout: float = 30.0,
    ) -> MCPServer:
        """A server run as a subprocess speaking MCP on its stdin and stdout.

        ``env`` is added to a minimal default environment (never logged or shown). The
        process ends when the context exits, also after a cancel during start-up.
        """
        check_str("command", command)
        arguments = [check_str("args", a) for a in args]
        environment = {str(k): str(v) for k, v in (env or {}).items()}
        params = StdioServerParameters(
            command=command,
            args=arguments,
            env=environment or None,
            cwd=None if cwd is None else os.fspath(cwd),
        )

        async def transport(stack: contextlib.AsyncExitStack, errlog: IO[str]) -> Any:
            return await stack.enter_async_context(
                stdio_client(params, errlog=cast(TextIO, errlog))
            )

        return cls(
            f"MCP server {command!r}",
            transport,
            secrets=list(environment.values()),
            startup_timeout=startup_timeout,
        )

    @classmethod
    def http(
        cls,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        startup_timeout: float = 30.0,
    ) -> MCPServer:
        """A server over streamable HTTP. ``headers`` (auth) are never logged or shown."""
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidArgumentError("url", f"must be an http:// or https:// URL, not {url!r}")
        sent = {str(k): str(v) for k, v in (headers or {}).items()}
        refusals: list[int] = []

        async def note(response: Any) -> None:
            if response.status_code >= 400:
                refusals.append(response.status_code)

        async def transport(stack: contextlib.AsyncExitStack, _errlog: IO[str]) -> Any:
            client = await stack.enter_async_context(create_mcp_http_client(headers=sent))
            client.event_hooks["response"].append(note)
            return await stack.enter_async_context(streamable_http_client(url, http_client=client))

        return cls(
            f"MCP server at {url}",
            transport,
            secrets=list(sent.values()),
            startup_timeout=startup_timeout,
            http_refusals=refusals,
        )

    # -- the session ----------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        require_trio("`async with MCPServer`")
        if self._stack is not None:
            raise AgtlError(f"{self.label} is entered already")
        stack = contextlib.AsyncExitStack()
        self._http_refusals.clear()  # what an earlier start-up was answered says nothing now
        # The server's stderr goes to a file of ours: its last lines explain a failure.
        self._stderr = stack.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8"))  # noqa: SIM115
        try:
            try:
                streams = await self._transport(stack, self._stderr)
            except OSError as exc:
                raise MCPServerError(
                    f"{self.label} could not be started: {self._scrub(str(exc))}"
                ) from None
            session = await stack.enter_async_context(ClientSession(streams[0], streams[1]))
            try:
                with trio.fail_after(self._startup_timeout):
                    await session.initialize()
            except trio.TooSlowError:
                raise MCPServerError(
                    f"{self.label} did not answer within {self._startup_timeout:g}s of starting"
                    f"{self._stderr_tail()}"
                ) from None
            except (SDKError, OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise MCPServerError(
                    f"{self.label} failed while starting: {self._scrub(str(exc))}"
                    f"{self._refused()}{self._stderr_tail()}"
                ) from None
        except BaseException as error:
            # Closed here, in the scopes it was opened in: the transport's own shutdown is
            # bounded (stdin closed, then terminate, then kill) and shielded.
            try:
                await stack.aclose()
            except Exception as closing:
                # The transport failed underneath (an HTTP server that is not there): that is
                # the cause to report, in one error. Its own nursery cancelled the start-up
                # (the Cancelled in hand is the transport's, replaced by this failure); an
                # enclosing cancel is delivered again at the caller's next checkpoint.
                if isinstance(error, KeyboardInterrupt | SystemExit):
                    raise error from None
                raise MCPServerError(
                    f"{self.label} failed while starting: {self._cause(closing)}"
                    f"{self._refused()}{self._stderr_tail()}"
                ) from None
            raise
        self._stack, self._session = stack, session
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack, self._session = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    def _live(self) -> ClientSession:
        if self._session is None:
            raise AgtlError(f"{self.label} is not open: use `async with` around its use")
        return self._session

    # -- tools ----------------------------------------------------------------------------------
    async def tools(
        self,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - each tool call's bound, not this call's
        on_progress: Progress | None = None,
        needs_approval: bool | Callable[[str, dict[str, Any]], bool] = False,
        approval_timeout: float | None = None,
        guardrails: Sequence[Guardrail] = (),
        result_guardrails: Sequence[Guardrail] = (),
    ) -> list[Tool]:
        """The server's tools as :class:`agtl.Tool` values (each call bounded by ``timeout``).

        ``needs_approval`` makes calls wait for a person's decision first: ``True`` for every
        tool, or a function of the tool's (server) name and its arguments; see
        ``@agtl.tool(needs_approval=...)``. ``guardrails`` check every call's arguments and
        ``result_guardrails`` what the model is told of its result, as on ``@agtl.tool``.

        A name that is not a valid tool name for models (letters, digits, ``_`` and ``-``) is
        given with the other characters as ``_``; the server is called by its own name.
        Progress notifications become the tool's progress (``agtl.report_progress``): recorded
        in the summary (kind ``tool.progress``), yielded by a streaming tool loop as
        :class:`~agtl.ToolProgress` parts, and passed to ``on_progress`` if given.
        """
        check_optional_seconds("timeout", timeout)
        check_optional_seconds("approval_timeout", approval_timeout)
        checks = check_guardrails("guardrails", guardrails)
        result_checks = check_guardrails("result_guardrails", result_guardrails)
        session = self._live()
        found: list[Tool] = []
        cursor: str | None = None
        while True:
            page = None if cursor is None else PaginatedRequestParams(cursor=cursor)
            request = session.list_tools(params=page)
            listed = await self._call(request)
            for described in listed.tools:
                tool = self._tool(described, timeout, on_progress)
                if needs_approval is not False:
                    rule = _approval_rule(needs_approval, described.name)
                    tool = attrs.evolve(
                        tool, needs_approval=rule, approval_timeout=approval_timeout
                    )
                if checks or result_checks:
                    tool = attrs.evolve(tool, guardrails=checks, result_guardrails=result_checks)
                found.append(tool)
            cursor = listed.next_cursor
            if not cursor:
                return found

    def _tool(self, described: Any, timeout: float | None, on_progress: Progress | None) -> Tool:
        remote = described.name
        schema = dict(described.input_schema or {"type": "object", "properties": {}})
        validator = jsonschema.Draft202012Validator(schema)

        def check(arguments: dict[str, Any]) -> dict[str, Any]:
            problems = sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))
            if problems:
                where = "/".join(str(p) for p in problems[0].path) or "arguments"
                raise ValueError(f"{where}: {problems[0].message}")
            return arguments

        async def call(session: Session, **arguments: Any) -> Any:
            # The SDK calls back from its own receive task: take this call's reporter now.
            reporter = progress_hook.get()

            async def report(progress: float, total: float | None, message: str | None) -> None:
                if reporter is not None:
                    reporter(progress, total, message)
                if on_progress is not None:
                    on_progress(session, remote, progress, total, message)
                await trio.lowlevel.checkpoint()

            result = await self._call(
                self._live().call_tool(remote, arguments, progress_callback=report)
            )
            text = "\n".join(str(block.text) for block in result.content if hasattr(block, "text"))
            if result.is_error:
                raise MCPToolError(text or f"{remote} failed")
            if result.structured_content is not None:
                structured = result.structured_content
                return structured.get("result", structured) if len(structured) == 1 else structured
            return text

        return Tool.from_schema(
            _NAME.sub("_", remote)[:64],
            described.description or f"The MCP tool {remote}.",
            schema,
            call,
            check=check,
            timeout=timeout,
            takes_session=True,
        )

    async def _call(self, request: Awaitable[Any]) -> Any:
        """One request; a broken session becomes :class:`MCPServerError`, with the cause."""
        try:
            return await request
        except SDKError as exc:
            raise MCPServerError(
                f"{self.label}: {self._scrub(str(exc))}{self._stderr_tail()}"
            ) from None
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise MCPServerError(
                f"{self.label} went away: {type(exc).__name__}{self._stderr_tail()}"
            ) from None

    # -- secrets ----------------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            if len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    def _cause(self, error: BaseException) -> str:
        """What went wrong underneath, from the leaves of an exception group."""
        leaves: list[BaseException] = []
        pending = [error]
        while pending:
            current = pending.pop()
            if isinstance(current, BaseExceptionGroup):
                pending.extend(current.exceptions)
            else:
                leaves.append(current)
        text = "; ".join(f"{type(leaf).__name__}: {leaf}" for leaf in leaves)
        if any("Connect" in type(leaf).__name__ or isinstance(leaf, OSError) for leaf in leaves):
            text += " (is the server running there?)"
        return self._scrub(text)

    def _refused(self) -> str:
        """The HTTP error status the server answered with, and what to check."""
        if not self._http_refusals:
            return ""
        status = self._http_refusals[-1]
        if status in (401, 403):
            return f" (HTTP {status}: the server refused the credentials; check the headers)"
        return f" (HTTP {status})"

    def _stderr_tail(self) -> str:
        """The last lines the server wrote to its stderr, for an error message."""
        log = self._stderr
        if log is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            log.flush()
            log.seek(0)
            lines = [line.rstrip() for line in log.read().splitlines() if line.strip()]
            if lines:
                return "; its stderr ends: " + self._scrub(" | ".join(lines[-3:]))[-400:]
        return ""

    def __repr__(self) -> str:
        state = "open" if self._session is not None else "closed"
        return f"MCPServer({self.label}, {state})"


def _approval_rule(
    rule: bool | Callable[[str, dict[str, Any]], bool], remote: str
) -> bool | Callable[[dict[str, Any]], bool]:
    """A tool's ``needs_approval`` from the server-wide rule (a function gets the name too)."""
    if isinstance(rule, bool):
        return rule
    if not callable(rule):
        raise InvalidArgumentError(
            "needs_approval", f"must be True, False or a function, not {rule!r}"
        )
    return lambda arguments: bool(rule(remote, arguments))
