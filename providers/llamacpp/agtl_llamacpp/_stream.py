"""One generation on a local model: a worker thread that feeds text to the trio side.

The worker owns the llama.cpp context for the whole generation and never outlives it: the
trio side closes a stream by raising the engine's abort switch and waiting for the thread,
which llama.cpp notices between tokens and inside a long prompt's decode.
"""

from __future__ import annotations

import codecs
import collections
import json
import threading
import time
from typing import Any

import llama_cpp
import trio
from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

from agtl import (
    CallReport,
    ContextLengthError,
    GenerationRequest,
    GenerationStream,
    InvalidArgumentError,
    Provenance,
    ProviderError,
    StopReason,
    ToolCallRequest,
    Usage,
)
from agtl_llamacpp._compat import drop_kv_after, held_tokens, needs_eval, vocab
from agtl_llamacpp._engine import Engine
from agtl_llamacpp._kv_store import Prepared
from agtl_llamacpp._stop import StopMatcher
from agtl_llamacpp._tools import call_grammar, mode_of, parse_call, render_messages

# Sampling defaults when a request leaves a value unset (llama-cpp-python's own defaults).
_DEFAULT_TEMPERATURE = 0.8
_DEFAULT_TOP_P = 0.95
_DEFAULT_TOP_K = 40


class LlamaStream(GenerationStream):
    def __init__(self, engine: Engine, request: GenerationRequest) -> None:
        self._engine = engine
        self._request = request
        self._pieces: collections.deque[str] = collections.deque()
        self._lot = trio.lowlevel.ParkingLot()
        self._done = False
        self._error: BaseException | None = None
        self._holding_turn = False
        self._started = False
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._tokens: list[int] = []
        self._cached = 0
        self._completion = 0
        self._stop: StopReason | None = None
        self._queue_wait = 0.0
        self._prefill_seconds: float | None = None
        self._prompt_threads: int | None = None
        self._decode_seconds: float | None = None
        self._grammar: LlamaGrammar | None = None
        self._prepared: Prepared | None = None
        self._committed = False
        self._kv: dict[str, object] = {}
        # Tool calls: how this generation treats tools, output held back while it may be a
        # call, and the calls found once it ended.
        self._tool_mode = mode_of(request)
        self._held: list[str] = []
        self._deciding = self._tool_mode is not None
        self._tool_calls: tuple[ToolCallRequest, ...] = ()

    # -- trio side ----------------------------------------------------------------------------
    async def _start(self) -> None:
        """Wait for the model (FIFO, cancellable), then start the worker thread.

        Runs on the first read, so a request cancelled while queued has a stream that reports
        exactly zero tokens, and it never touched the model.
        """
        self._started = True
        queued_at = trio.current_time()
        await self._engine.turn.acquire()
        self._holding_turn = True
        self._queue_wait = trio.current_time() - queued_at
        try:
            self._prepare()
            self._token = trio.lowlevel.current_trio_token()
            self._engine.abort.clear()
            self._thread = threading.Thread(
                target=self._work,
                name=f"agtl-llamacpp-{self._request.execution_id[:8]}-{self._request.call_index}",
                daemon=True,
            )
            self._thread.start()
        except BaseException:
            self._release_turn()
            raise

    async def next_delta(self) -> str | None:
        if not self._started:
            await self._start()
        if self._tool_mode is None:
            piece = await self._next_piece()
        else:
            piece = await self._next_tool_aware()
        if piece is None:
            self._commit()  # the end of the reply is being delivered: the turn's commit point
        return piece

    async def _next_tool_aware(self) -> str | None:
        """Pieces, but held back while the output may still be a tool call."""
        while True:
            piece = await self._next_piece()
            if piece is None:
                return self._settle_held()
            if not self._deciding:
                return piece
            self._held.append(piece)
            text = "".join(self._held).lstrip()
            if self._tool_mode == "auto" and text and not text.startswith("{"):
                # Plain text after all: hand over what was held, then stream as usual.
                self._deciding = False
                held, self._held = "".join(self._held), []
                return held

    def _settle_held(self) -> str | None:
        """The generation ended: what was held is a tool call, or text still to deliver."""
        if not self._held:
            return None
        held, self._held = "".join(self._held), []
        call = parse_call(held, self._request.tools, self._request.call_index)
        if call is not None:
            self._tool_calls = (call,)
            return None
        self._deciding = False
        return held  # then the next read returns None

    async def _next_piece(self) -> str | None:
        while True:
            if self._pieces:
                return self._pieces.popleft()
            if self._done:
                if self._error is not None:
                    error, self._error = self._error, None
                    raise error
                return None
            await self._lot.park()

    def report(self) -> CallReport:
        details: dict[str, object] = {
            "chat_template": self._engine.template_id,
            "queue_wait": self._queue_wait,
            "prefill_seconds": self._prefill_seconds,
            "prompt_threads": self._prompt_threads,
            "cached_tokens": self._cached,
            "context": self._engine.n_ctx,
        }
        details.update(self._kv)
        if self._decode_seconds and self._completion > 1:
            details["decode_tokens_per_second"] = (self._completion - 1) / self._decode_seconds
        usage = Usage(
            input_tokens=len(self._tokens),
            output_tokens=self._completion,
            cached_input_tokens=self._cached,
            provenance=Provenance.COUNTED,
        )
        stop = None if self._stop is StopReason.CANCELLED else self._stop
        if self._tool_calls and stop is not None:
            stop = StopReason.TOOL_CALLS
        return CallReport(
            usage, stop, self._engine.model_name, details, tool_calls=self._tool_calls
        )

    async def aclose(self) -> None:
        if self._thread is not None and not self._done:
            self._engine.abort.set()
            while not self._done:
                await self._lot.park()
        if self._prepared is not None and not self._committed:
            # The end of the reply never reached the caller: roll the turn back.
            assert self._engine.store is not None
            self._engine.store.discard(self._prepared)
            self._kv["kv_rolled_back"] = self._prepared.generation
        self._release_turn()

    def _commit(self) -> None:
        """The end of the reply is being delivered: this is the turn's commit point."""
        prepared = self._prepared
        if prepared is None or self._committed or self._engine.store is None:
            return
        try:
            self._engine.store.commit(prepared)
        except OSError as exc:
            self._kv["kv_note"] = f"commit failed: {exc.strerror or exc}"
            self._engine.store.discard(prepared)
            return
        self._committed = True
        self._kv["kv_committed_generation"] = prepared.generation

    def _release_turn(self) -> None:
        if self._holding_turn:
            self._holding_turn = False
            self._engine.turn.release()

    def _prepare(self) -> None:
        """Render and tokenize the prompt; runs on the trio thread while holding the turn."""
        engine = self._engine
        llama = engine.llama
        messages: Any = render_messages(self._request)
        prompt = engine.formatter(messages=messages).prompt
        self._tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        budget = self._request.options.max_tokens or 1
        if len(self._tokens) + min(budget, 1) >= engine.n_ctx:
            raise ContextLengthError(len(self._tokens), engine.n_ctx, model=engine.model_name)
        if self._tool_mode is not None:
            if self._request.options.response_format is not None:
                raise InvalidArgumentError(
                    "response_format", "cannot be combined with tools on the local model"
                )
            self._grammar = call_grammar(self._request)
        else:
            self._grammar = _grammar(self._request.options.response_format)

    def _publish(self, callback: Any, *args: Any) -> None:
        assert self._token is not None
        try:
            self._token.run_sync_soon(callback, *args)
        except trio.RunFinishedError:
            if callback == self._finished:
                # Nobody is left to wait for us; hand the model back directly.
                self._done = True
                self._release_turn()

    def _add_piece(self, text: str) -> None:
        self._pieces.append(text)
        self._lot.unpark_all()

    def _finished(self) -> None:
        self._done = True
        if self._thread is not None:
            # Posting this callback is the worker's last act: the join returns at once, and
            # no thread of ours outlives the call it served.
            self._thread.join(timeout=5.0)
        # The model is free as soon as the worker is done, even if text is still unread.
        self._release_turn()
        self._lot.unpark_all()

    # -- worker thread ------------------------------------------------------------------------
    def _work(self) -> None:
        engine = self._engine
        llama = engine.llama
        options = self._request.options
        matcher = StopMatcher(options.stop or ())
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        limit = options.max_tokens
        started = time.perf_counter()
        first_token_at: float | None = None
        generator = None
        try:
            self._enter_session(options.cache_key)
            self._cached = _reusable_prefix(llama, self._tokens)
            self._prompt_threads = engine.fit_prompt_threads()
            # From here on the prompt is being processed (the generator evaluates it first).
            self._kv["prefill_started"] = True
            engine.prefills_started += 1
            if options.seed is not None:
                llama.set_seed(options.seed)
            generator = llama.generate(
                self._tokens,
                top_k=_DEFAULT_TOP_K if options.top_k is None else options.top_k,
                top_p=_DEFAULT_TOP_P if options.top_p is None else options.top_p,
                temp=_DEFAULT_TEMPERATURE if options.temperature is None else options.temperature,
                repeat_penalty=1.0,
                frequency_penalty=options.frequency_penalty or 0.0,
                presence_penalty=options.presence_penalty or 0.0,
                grammar=self._grammar,
                reset=True,
            )
            for token in generator:
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                    self._prefill_seconds = first_token_at - started
                if engine.abort.is_set():
                    self._stop = StopReason.CANCELLED
                    break
                if llama_cpp.llama_vocab_is_eog(vocab(llama), token):
                    self._stop = StopReason.EOS
                    break
                self._completion += 1
                text, stopped = matcher.feed(decoder.decode(llama.detokenize([token])))
                if text:
                    self._publish(self._add_piece, text)
                if stopped:
                    self._stop = StopReason.STOP_SEQUENCE
                    break
                if (limit is not None and self._completion >= limit) or (
                    llama.n_tokens + 1 >= engine.n_ctx
                ):
                    self._stop = StopReason.LENGTH
                    break
            if self._stop in (StopReason.EOS, StopReason.LENGTH):
                tail = matcher.feed(decoder.decode(b"", final=True))[0] + matcher.flush()
                if tail:
                    self._publish(self._add_piece, tail)
            finished = self._stop in (StopReason.EOS, StopReason.LENGTH, StopReason.STOP_SEQUENCE)
            if finished and self._completion > 0:
                self._prepare_commit(options.cache_key)
        except RuntimeError as exc:
            if engine.abort.is_set():
                # An aborted decode leaves a partial batch in the KV cache past n_tokens:
                # drop it so the context is consistent and the valid prefix stays reusable.
                drop_kv_after(llama, llama.n_tokens)
                self._stop = StopReason.CANCELLED
            else:
                self._error = ProviderError(f"llama.cpp failed: {exc}", provider="llamacpp")
        except BaseException as exc:
            self._error = exc
        finally:
            if generator is not None:
                generator.close()
            if first_token_at is not None:
                self._decode_seconds = time.perf_counter() - first_token_at
            engine.generation_ended()
            self._publish(self._finished)

    def _enter_session(self, key: str | None) -> None:
        """Bring the context to ``key``'s state (worker thread): in memory, or from disk."""
        engine = self._engine
        if key is not None:
            self._kv["kv_session"] = key
        if key is not None and engine.store is not None and engine.current_key != key:
            loaded, why = engine.store.load(key)
            if loaded is not None and engine.load_state(loaded.input_ids, loaded.state):
                self._kv["kv_loaded_generation"] = loaded.generation
            elif why is not None:
                self._kv["kv_note"] = f"saved state not loaded: {why}"
        engine.current_key = key

    def _prepare_commit(self, key: str | None) -> None:
        """Write the turn's state to disk, uncommitted until the reply's end is delivered."""
        store = self._engine.store
        if key is None or store is None:
            return
        try:
            ids, state = self._engine.save_state()
            self._prepared = store.prepare(key, ids, state)
        except OSError as exc:
            self._kv["kv_note"] = f"state not saved: {exc.strerror or exc}"


def _reusable_prefix(llama: llama_cpp.Llama, tokens: list[int]) -> int:
    """How many prompt tokens the context already holds (as ``Llama.generate`` reuses them)."""
    held = held_tokens(llama)
    common = 0
    for a, b in zip(held, tokens, strict=False):
        if a != b:
            break
        common += 1
    if common == len(tokens):
        if llama.n_tokens == len(tokens) and not needs_eval(llama):
            return common
        return max(common - 1, 0)
    return common


def _grammar(response_format: Any) -> LlamaGrammar | None:
    if response_format is None:
        return None
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidArgumentError(
                "response_format",
                "json_schema needs {'json_schema': {'name': ..., 'schema': {...}}}",
            )
        try:
            return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise InvalidArgumentError("response_format", f"unusable JSON schema: {exc}") from None
    raise InvalidArgumentError(
        "response_format", f"type must be 'text', 'json_object' or 'json_schema', not {kind!r}"
    )
