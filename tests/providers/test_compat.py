"""The private parts of llama-cpp-python the local provider uses are still there, and mean
what ``agtl_llamacpp._compat`` says (checked on the bundled model); an upgrade that moves
one fails here, by name, not somewhere deep in a generation."""

from __future__ import annotations

import llama_cpp

from agtl_llamacpp import LlamaCppProvider, _compat


def test_the_upstream_log_handler_is_callable() -> None:
    assert callable(_compat.upstream_log_callback())


async def test_each_private_part_works_on_a_loaded_model() -> None:
    async with LlamaCppProvider(n_ctx=512) as provider:
        llama = provider._engine.llama
        tokens = llama.tokenize(b"Hello there", add_bos=True)
        assert llama_cpp.llama_vocab_is_eog(_compat.vocab(llama), llama.token_eos())
        assert not llama_cpp.llama_vocab_is_eog(_compat.vocab(llama), tokens[-1])
        llama.eval(tokens)
        assert list(_compat.held_tokens(llama)[: len(tokens)]) == tokens
        assert isinstance(_compat.needs_eval(llama), bool)
        _compat.require_eval(llama)
        assert _compat.needs_eval(llama) is True
        _compat.drop_kv_after(llama, 1)  # no error: the cache call still exists
        _compat.set_threads(llama, 1, 1)
        assert llama_cpp.llama_n_threads_batch(llama.ctx) == 1
        _compat.set_threads(llama, 1, 2)
        assert llama_cpp.llama_n_threads_batch(llama.ctx) == 2
