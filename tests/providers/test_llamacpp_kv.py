"""KV-cache sessions of the local provider: reuse, atomic commits, rollback, crash residue."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

import agtl
from agtl import Session, Status, StopReason
from agtl_llamacpp import LlamaCppProvider
from agtl_llamacpp._kv_store import KVStore
from tests.waiting import wait_for, wait_for_thread_event

SYSTEM = "You are a helpful assistant."
FIRST = "What is the capital of France?"


def local(cache_dir: Path, **kwargs: Any) -> LlamaCppProvider:
    return LlamaCppProvider(n_ctx=2048, cache_dir=cache_dir, **kwargs).with_default_options(
        temperature=0
    )


def history_after(first: agtl.TextResult, question: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": FIRST},
        {"role": "assistant", "content": first.text},
        {"role": "user", "content": question},
    ]


async def turn(
    provider: LlamaCppProvider, key: str, messages: list[dict[str, str]] | None = None
) -> agtl.Result[agtl.TextResult]:
    async def run(session: Session) -> agtl.TextResult:
        return await session.generate_text(
            messages=messages
            or [{"role": "system", "content": SYSTEM}, {"role": "user", "content": FIRST}],
            max_tokens=24,
            cache_key=key,
        )

    return await provider.simple_execution(run).result()


def manifest(cache_dir: Path, key: str) -> dict[str, Any]:
    data = json.loads((cache_dir / f"{key}.json").read_text())
    assert isinstance(data, dict)
    return data


async def test_a_session_survives_a_restart_and_reuses_its_state(tmp_path: Path) -> None:
    async with local(tmp_path) as first_process:
        first = (await turn(first_process, "chat")).unwrap()
        details = (await turn(first_process, "chat")).summary.llm_calls[0].details
    assert manifest(tmp_path, "chat")["generation"] == 2
    assert details["kv_committed_generation"] == 2

    async with local(tmp_path) as second_process:  # a new process: cold context
        result = await turn(second_process, "chat", history_after(first, "And of Italy?"))
    call = result.summary.llm_calls[0]
    assert call.details["kv_loaded_generation"] == 2
    assert call.usage.cached_input_tokens is not None
    assert call.usage.cached_input_tokens >= (first.usage.input_tokens or 0)
    assert "Rome" in result.unwrap().text
    assert manifest(tmp_path, "chat")["generation"] == 3


async def test_cancelled_turn_never_commits_and_resume_reuses_the_committed_prefix(
    tmp_path: Path,
) -> None:
    async with local(tmp_path) as provider:
        first = (await turn(provider, "talk")).unwrap()
        committed = manifest(tmp_path, "talk")
        got = trio.Event()

        async def stopped(session: Session) -> str:
            async with session.stream_text(
                messages=history_after(first, "Write a long essay about Paris."),
                max_tokens=300,
                cache_key="talk",
            ) as stream:
                async for _ in stream:
                    got.set()
            return stream.text

        async with provider.simple_execution(stopped) as execution:
            await wait_for(got, "the first delta of the essay")
            execution.cancel("stop")
            cancelled = await execution.result()
        assert cancelled.status is Status.CANCELED
        assert manifest(tmp_path, "talk") == committed  # the last committed generation stays
        assert sorted(p.name for p in tmp_path.iterdir()) == ["talk.1.kv", "talk.json"]

        resumed = await turn(provider, "talk", history_after(first, "And of Italy?"))
    call = resumed.summary.llm_calls[0]
    assert "Rome" in resumed.unwrap().text
    assert call.usage.cached_input_tokens is not None
    assert call.usage.cached_input_tokens >= (first.usage.input_tokens or 0)
    assert manifest(tmp_path, "talk")["generation"] == 2


async def test_zero_token_turn_never_commits(tmp_path: Path) -> None:
    async with local(tmp_path) as provider:

        async def nothing(session: Session) -> None:
            async with session.stream_text(prompt=FIRST, system=SYSTEM, cache_key="empty"):
                return  # leaves before any token: the call is stopped

        result = await provider.simple_execution(nothing).result()
    assert result.summary.llm_calls[0].stop_reason is StopReason.CANCELLED
    assert list(tmp_path.iterdir()) == []


async def test_cancel_that_wins_the_race_with_the_commit_rolls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writing = threading.Event()
    release = threading.Event()
    real_prepare = KVStore.prepare

    def slow_prepare(self: KVStore, key: str, ids: list[int], state: bytes) -> Any:
        writing.set()
        release.wait(30)
        return real_prepare(self, key, ids, state)

    async with local(tmp_path) as provider:
        await turn(provider, "race")
        before = manifest(tmp_path, "race")
        monkeypatch.setattr(KVStore, "prepare", slow_prepare)
        async with provider.simple_execution(
            lambda s: s.generate_text(prompt=FIRST, system=SYSTEM, cache_key="race")
        ) as execution:
            await wait_for_thread_event(writing, "the KV state being written")
            execution.cancel("stop while the state is being written")
            release.set()
            result = await execution.result()
    assert result.status is Status.CANCELED
    call = result.summary.llm_calls[0]
    assert call.stop_reason is StopReason.CANCELLED
    assert call.details["kv_rolled_back"] == 2
    assert manifest(tmp_path, "race") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race.1.kv", "race.json"]


async def test_crash_residue_is_swept_and_committed_data_kept(tmp_path: Path) -> None:
    async with local(tmp_path) as provider:
        await turn(provider, "keep")
    committed = manifest(tmp_path, "keep")
    (tmp_path / ".keep.2.kv.tmp-deadbeef").write_bytes(b"half written")
    (tmp_path / ".keep.json.tmp-cafe").write_text("{")
    (tmp_path / "keep.2.kv").write_bytes(b"written, but its manifest never was")

    async with local(tmp_path) as restarted:
        assert sorted(restarted._engine.store.swept) == [  # type: ignore[union-attr]
            ".keep.2.kv.tmp-deadbeef",
            ".keep.json.tmp-cafe",
            "keep.2.kv",
        ]
        result = await turn(restarted, "keep")
    assert result.summary.llm_calls[0].details["kv_loaded_generation"] == 1
    assert manifest(tmp_path, "keep")["generation"] == 2
    assert committed["generation"] == 1


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "other_identity"])
async def test_a_state_that_does_not_match_is_never_loaded(tmp_path: Path, damage: str) -> None:
    async with local(tmp_path) as provider:
        await turn(provider, "bad")
    state = tmp_path / "bad.1.kv"
    if damage == "flip_byte":
        blob = bytearray(state.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        state.write_bytes(bytes(blob))
    elif damage == "truncate":
        state.write_bytes(state.read_bytes()[:100])
    else:
        data = manifest(tmp_path, "bad")
        data["identity"]["n_ctx"] = 999
        (tmp_path / "bad.json").write_text(json.dumps(data))

    async with local(tmp_path) as provider:
        result = await turn(provider, "bad")
    call = result.summary.llm_calls[0]
    assert "kv_loaded_generation" not in call.details
    assert "saved state not loaded" in str(call.details["kv_note"])
    assert result.unwrap().text == "The capital of France is Paris."


@pytest.mark.parametrize("key", ["../etc", "a/b", "a\\b", "", ".hidden", "x" * 129, "a..b", 5])
def test_bad_session_keys_are_refused(key: Any) -> None:
    with pytest.raises(agtl.InvalidArgumentError) as info:
        agtl.GenerationOptions.from_kwargs({"cache_key": key})
    assert info.value.argument == "cache_key"


async def test_keys_differing_only_by_case_are_one_session(tmp_path: Path) -> None:
    async with local(tmp_path) as provider:
        await turn(provider, "MyChat")
        await turn(provider, "mychat")
        assert provider.kv_state_keys() == ["mychat"]
    assert manifest(tmp_path, "mychat")["generation"] == 2


async def test_disk_budget_evicts_least_recently_used(tmp_path: Path) -> None:
    async with local(tmp_path) as probe:
        await turn(probe, "size-probe")
    size = (tmp_path / "size-probe.1.kv").stat().st_size
    for path in tmp_path.iterdir():
        path.unlink()

    async with local(tmp_path, cache_budget_bytes=int(size * 3.5)) as provider:
        for key in ("one", "two", "three"):
            await turn(provider, key)
        assert provider.kv_state_keys() == ["one", "three", "two"]  # three fit the budget
        await turn(provider, "one")  # "one" is now the most recently used
        await turn(provider, "four")  # a fourth does not fit: the least recently used goes
        assert provider.kv_state_keys() == ["four", "one", "three"]


async def test_delete_one_and_all(tmp_path: Path) -> None:
    async with local(tmp_path) as provider:
        for key in ("a", "b", "c"):
            await turn(provider, key)
        assert await provider.delete_kv_state("B") is True
        assert await provider.delete_kv_state("b") is False
        assert provider.kv_state_keys() == ["a", "c"]
        assert await provider.delete_all_kv_states() == 2
        assert provider.kv_state_keys() == []
    assert list(tmp_path.iterdir()) == []


async def test_streaming_turns_commit_too(tmp_path: Path) -> None:
    async def gen(session: Session) -> AsyncIterator[agtl.Event]:
        async with session.stream_text(prompt=FIRST, system=SYSTEM, cache_key="s") as stream:
            async for delta in stream:
                yield session.emit("chunk", delta)
        yield await session.done(stream.text)

    async with local(tmp_path) as provider:
        result = await provider.streaming_execution(gen).result()
    assert result.value == "The capital of France is Paris."
    assert manifest(tmp_path, "s")["generation"] == 1


@pytest.mark.parametrize("pointer", ["absolute", "parent", "other_key", "not_a_number"])
async def test_a_manifest_never_leads_out_of_the_directory(tmp_path: Path, pointer: str) -> None:
    cache = tmp_path / "cache"
    victim = tmp_path / "victim.kv"
    victim.write_bytes(b"a file of the user's, outside the cache directory")
    async with local(cache) as provider:
        await turn(provider, "chat")
        await turn(provider, "other")
    data = manifest(cache, "chat")
    data["file"] = {
        "absolute": str(victim),
        "parent": "../victim.kv",
        "other_key": "other.1.kv",
        "not_a_number": "chat.x.kv",
    }[pointer]
    # A forged manifest with a matching size and checksum: only the name gives it away.
    data["size"] = victim.stat().st_size if pointer != "other_key" else data["size"]
    (cache / "chat.json").write_text(json.dumps(data))

    async with local(cache) as provider:
        result = await turn(provider, "chat")  # runs cold, then commits over the forgery
        details = result.summary.llm_calls[0].details
        assert "kv_loaded_generation" not in details
        assert "names a state file the store never writes" in str(details["kv_note"])
        assert manifest(cache, "chat")["file"] == "chat.1.kv"
        assert await provider.delete_all_kv_states() == 2
    assert victim.exists()
    assert sorted(p.name for p in cache.iterdir()) == []


async def test_files_that_are_not_the_stores_own_are_left_alone(tmp_path: Path) -> None:
    foreign = {
        "notes.json": '{"file": "../x", "generation": 1}',
        "report.tmp-2026.txt": "user data",
        "weights.kv": "not a state file",
        "settings.json": "[1, 2]",
    }
    for name, text in foreign.items():
        (tmp_path / name).write_text(text)
    async with local(tmp_path, cache_budget_bytes=0) as provider:  # evicts all it can
        assert provider._engine.store is not None
        assert provider._engine.store.swept == []
        await turn(provider, "a")
        await turn(provider, "b")  # the budget evicts "a", and nothing else
        assert provider.kv_state_keys() == ["b"]
        assert await provider.delete_all_kv_states() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(foreign)
