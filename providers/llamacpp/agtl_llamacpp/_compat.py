"""Every private part of llama-cpp-python this provider uses, in one place.

llama-cpp-python has no public way to do these few things; each is checked against the pinned
version (``llama_cpp_python==0.3.36``, ``requirements/llamacpp.txt``), and
``tests/providers/test_compat.py`` fails loudly, naming the attribute, when an upgrade moves
one. Nothing else in this package reaches behind llama-cpp-python's public API.
"""

from __future__ import annotations

from typing import Any

import llama_cpp
import llama_cpp._logger

__all__ = [
    "drop_kv_after",
    "held_tokens",
    "needs_eval",
    "require_eval",
    "set_threads",
    "upstream_log_callback",
    "vocab",
]


def upstream_log_callback() -> Any:
    """llama-cpp-python's own log handler (``llama_cpp._logger.llama_log_callback``, 0.3.36),
    which agtl's handler calls for every line it does not drop."""
    return llama_cpp._logger.llama_log_callback


def vocab(llama: llama_cpp.Llama) -> Any:
    """The model's vocabulary handle, for ``llama_vocab_is_eog`` (``Llama._model.vocab``,
    0.3.36)."""
    return llama._model.vocab


def drop_kv_after(llama: llama_cpp.Llama, position: int) -> None:
    """Remove the KV cache's entries from ``position`` on, in every sequence: what an aborted
    decode left past the valid prefix (``Llama._ctx.kv_cache_seq_rm``, 0.3.36)."""
    llama._ctx.kv_cache_seq_rm(-1, position, -1)


def held_tokens(llama: llama_cpp.Llama) -> Any:
    """The tokens the context holds, as ``Llama.generate`` compares them for prefix reuse
    (``Llama._input_ids``, 0.3.36)."""
    return llama._input_ids


def needs_eval(llama: llama_cpp.Llama) -> bool:
    """Whether the context must evaluate its last token again before sampling
    (``Llama._requires_eval``, 0.3.36)."""
    return bool(llama._requires_eval)


def require_eval(llama: llama_cpp.Llama) -> None:
    """Make the next decode refresh the logits, after a state was loaded into the context
    (``Llama._requires_eval``, 0.3.36)."""
    llama._requires_eval = True


def set_threads(llama: llama_cpp.Llama, n_threads: int, n_threads_batch: int) -> None:
    """Change the threads of the next decodes, token generation and prompt processing
    (``Llama._ctx.set_n_threads``, 0.3.36)."""
    llama._ctx.set_n_threads(n_threads, n_threads_batch)
