"""One loaded model: a llama.cpp context, its FIFO turn lock and its abort switch.

A ``Llama`` object is one context and is not thread-safe, so exactly one generation runs at
a time. Callers queue on a fair trio semaphore; a caller cancelled while queued leaves the
queue without touching the model.
"""

from __future__ import annotations

import ctypes
import hashlib
import threading
import weakref
from pathlib import Path
from typing import Any

import llama_cpp
import trio
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from agtl_llamacpp._compat import require_eval, set_threads, upstream_log_callback
from agtl_llamacpp._cpu import IdleCores
from agtl_llamacpp._kv_store import KVStore
from agtl_llamacpp._model_file import ModelLoadError

_engines: weakref.WeakSet[Engine] = weakref.WeakSet()
_upstream_log = upstream_log_callback()
# What llama.cpp logs, as an error, after every decode our own abort switch stopped.
_ABORT_NOISE = b"decode: removing memory module entries"


@llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
def _log_without_abort_noise(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """llama-cpp-python's log handler, minus the line an intended abort produces."""
    if text.startswith(_ABORT_NOISE) and any(e.abort.is_set() for e in list(_engines)):
        return
    _upstream_log(level, text, user_data)


llama_cpp.llama_log_set(_log_without_abort_noise, ctypes.c_void_p(0))


class Engine:
    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int,
        n_threads: int | None,
        n_batch: int,
        n_threads_batch: int | None = None,
        seed: int,
        n_ubatch: int = 256,
        flash_attn: bool = True,
        cache_dir: Path | None = None,
        cache_budget_bytes: int = 2**30,
    ) -> None:
        try:
            self.llama = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads_batch,
                n_batch=n_batch,
                n_ubatch=n_ubatch,
                seed=seed,
                flash_attn=flash_attn,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(f"llama.cpp could not load {path}: {exc}") from None
        self.path = path
        self.flash_attn = flash_attn
        self.n_ctx = self.llama.n_ctx()
        #: Prompt threads follow what other processes leave idle, unless the user chose them.
        self._idle = IdleCores() if n_threads_batch is None else None
        self.prompt_threads = self.llama.n_threads_batch
        self.turn = trio.Semaphore(1)  # fair: waiters are served first come, first served
        self.abort = threading.Event()
        # llama.cpp polls this during llama_decode; returning True aborts the decode.
        self._abort_callback = llama_cpp.ggml_abort_callback(self._should_abort)
        llama_cpp.llama_set_abort_callback(self.llama.ctx, self._abort_callback, None)
        metadata: dict[str, Any] = dict(self.llama.metadata)
        template = metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelLoadError(
                f"{path.name} has no chat template in its GGUF metadata "
                "(tokenizer.chat_template); agtl does not guess one"
            )
        eos = self.llama.detokenize([self.llama.token_eos()], special=True).decode(
            "utf-8", "replace"
        )
        bos = self.llama.detokenize([self.llama.token_bos()], special=True).decode(
            "utf-8", "replace"
        )
        self.formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        digest = hashlib.sha256(template.encode()).hexdigest()[:12]
        self.template_id = f"gguf:tokenizer.chat_template@{digest}"
        self.model_name = path.name.removesuffix(".gguf")
        self.closed = False
        #: The KV-cache session whose tokens the context holds now (None: anonymous calls).
        self.current_key: str | None = None
        #: How many generations have begun processing their prompt (written by the worker
        #: thread once a KV session is in place, read by anyone): where a cancel "in
        #: prefill" can be shown to have landed.
        self.prefills_started = 0
        self.store = (
            None
            if cache_dir is None
            else KVStore(cache_dir, budget_bytes=cache_budget_bytes, identity=self.identity())
        )
        _engines.add(self)

    def fit_prompt_threads(self) -> int:
        """Before a prompt (on the worker thread): one prompt thread per core other processes
        left idle since the last generation ended (see ``_cpu``); the number it will use."""
        if self._idle is not None:
            wanted = self._idle.threads()
            if wanted != self.prompt_threads:
                set_threads(self.llama, self.llama.n_threads, wanted)
                self.prompt_threads = wanted
        return self.prompt_threads

    def generation_ended(self) -> None:
        """After a generation (on the worker thread): the idle window starts again now, so the
        next estimate covers only the time this process was not generating."""
        if self._idle is not None:
            self._idle.restart()

    def identity(self) -> dict[str, Any]:
        """What a saved state must match to be loaded into this context."""
        with self.path.open("rb") as handle:
            head = hashlib.sha256(handle.read(1 << 20)).hexdigest()
        return {
            "model": self.path.name,
            "size": self.path.stat().st_size,
            "head_sha256": head,
            "n_ctx": self.n_ctx,
            "flash_attn": self.flash_attn,
            "llama_cpp": llama_cpp.__version__,
        }

    def load_state(self, input_ids: list[int], state: bytes) -> bool:
        """Put a saved session into the context (worker thread). False if llama.cpp refused."""
        llama = self.llama
        n = len(input_ids)
        if n >= self.n_ctx:
            return False
        buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if llama_cpp.llama_state_set_data(llama.ctx, buffer, len(state)) != len(state):
            llama.reset()  # type: ignore[no-untyped-call]
            return False
        llama.input_ids[:n] = input_ids
        llama.n_tokens = n
        require_eval(llama)  # the next decode must refresh the logits
        return True

    def save_state(self) -> tuple[list[int], bytes]:
        """The context's tokens and llama.cpp state, without logits (worker thread)."""
        llama = self.llama
        size = llama_cpp.llama_state_get_size(llama.ctx)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_get_data(llama.ctx, buffer, size)
        ids = [int(t) for t in llama.input_ids[: llama.n_tokens]]
        return ids, bytes(buffer)[:written]

    def _should_abort(self, _data: ctypes.c_void_p) -> bool:
        return self.abort.is_set()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.llama.close()
