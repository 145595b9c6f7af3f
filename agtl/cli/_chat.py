"""`agtl chat`: an interactive chat; Ctrl-C stops the reply, and exits at the prompt."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

import trio

import agtl
from agtl.cli._common import console, make_provider, summary_table

_HELP = (
    "commands: /save PATH  /load PATH  /summary  /reset  /help   "
    "(Ctrl-C stops a reply; at the prompt it exits)"
)


class _Lines:
    """Lines from a file descriptor, read asynchronously (ttys and pipes alike)."""

    def __init__(self, fd: int) -> None:
        self._stream = trio.lowlevel.FdStream(os.dup(fd))
        self._buffer = b""
        self._eof = False

    async def readline(self) -> str | None:
        while b"\n" not in self._buffer and not self._eof:
            data = await self._stream.receive_some(4096)
            if not data:
                self._eof = True
            self._buffer += data
        if not self._buffer:
            return None
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode("utf-8", "replace").rstrip("\r")

    async def aclose(self) -> None:
        await self._stream.aclose()


class _Chat:
    def __init__(self, provider: Any, args: argparse.Namespace, out: Any) -> None:
        self.provider = provider
        self.args = args
        self.out = out
        self.interactive = sys.stdin.isatty()
        self.conversation = agtl.Conversation(system=args.system)
        self.results: list[tuple[str, agtl.Result[Any]]] = []
        self.current: agtl.SimpleExecution[str] | None = None
        self.session_key = f"agtl-chat-{os.getpid()}"

    async def main(self) -> None:
        lines = _Lines(sys.stdin.fileno())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_ctrl_c, nursery.cancel_scope)
            if self.interactive:
                self.out.print(f"[dim]chatting with {self.provider.default_model} — {_HELP}[/]")
            while True:
                if self.interactive:
                    self.out.print("[bold green]you>[/] ", end="")
                line = await lines.readline()
                if line is None:
                    break
                text = line.strip()
                if not text:
                    continue
                if text.startswith("/"):
                    self._command(text)
                    continue
                await self._reply(text)
            nursery.cancel_scope.cancel()
        await lines.aclose()
        if self.interactive:
            self.out.print("\n[dim]bye[/]")

    async def _watch_ctrl_c(self, chat_scope: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            async for _ in signals:
                current = self.current
                if current is not None and current.outcome is None:
                    current.cancel("stopped with Ctrl-C")
                else:
                    chat_scope.cancel()  # Ctrl-C at the prompt: leave

    async def _reply(self, prompt: str) -> None:
        async def turn(session: agtl.Session) -> str:
            async with session.stream_text(
                conversation=self.conversation,
                prompt=prompt,
                cache_key=self.session_key,
                max_tokens=self.args.max_tokens,
            ) as stream:
                # A long history can take a while to read: show progress until the first token.
                waiting = self.out.status("reading the conversation…") if self.interactive else None
                if waiting is not None:
                    waiting.start()
                first = True
                try:
                    async for delta in stream:
                        if first:
                            first = False
                            if waiting is not None:
                                waiting.stop()
                                waiting = None
                            self.out.print("[bold cyan]model>[/] ", end="")
                        self.out.print(delta, end="")
                finally:
                    if waiting is not None:
                        waiting.stop()
            return stream.text

        execution = self.provider.simple_execution(turn)
        self.current = execution
        try:
            async with execution:
                result = await execution.result()
        finally:
            self.current = None
        self.results.append((f"turn {len(self.results) + 1}", result))
        if result.status is agtl.Status.CANCELED:
            self.out.print(" [yellow]⏹ stopped[/]")
        elif result.status is agtl.Status.FAILED:
            self.out.print(f"\n[red]error:[/] {type(result.error).__name__}: {result.error}")
        else:
            self.out.print()

    def _command(self, text: str) -> None:
        name, _, argument = text.partition(" ")
        argument = argument.strip()
        if name == "/help":
            self.out.print(_HELP)
        elif name == "/summary":
            if self.results:
                self.out.print(summary_table(self.results))
            else:
                self.out.print("[dim]no turns yet[/]")
        elif name == "/reset":
            self.conversation = agtl.Conversation(system=self.args.system)
            self.session_key = f"agtl-chat-{os.getpid()}-{len(self.results)}"
            self.out.print("[dim]conversation cleared[/]")
        elif name in ("/save", "/load"):
            if not argument:
                self.out.print(f"[red]error:[/] {name} needs a path, e.g. {name} chat.json")
                return
            try:
                if name == "/save":
                    self.conversation.save(argument)
                    self.out.print(f"[dim]saved {len(self.conversation)} items to {argument}[/]")
                else:
                    self.conversation = agtl.Conversation.load(argument)
                    self.out.print(f"[dim]loaded {len(self.conversation)} items from {argument}[/]")
            except (agtl.ConversationFileError, OSError) as exc:
                self.out.print(f"[red]error:[/] {exc}")
        else:
            self.out.print(f"[red]error:[/] unknown command {name}; {_HELP}")


def run(args: argparse.Namespace) -> int:
    out = console()
    provider = make_provider(args)
    chat = _Chat(provider, args, out)
    try:
        trio.run(chat.main)
    finally:
        trio.run(provider.aclose)
    # Piped input is a script: a failed turn makes the whole run fail (as `agtl run` does).
    failed = any(result.status is agtl.Status.FAILED for _, result in chat.results)
    return 4 if failed and not chat.interactive else 0
