"""KV-cache sessions on disk: one committed generation per key, written atomically.

Layout under ``cache_dir``: ``<key>.json`` (the manifest, the commit point) names
``<key>.<generation>.kv`` (token ids and llama.cpp's state). A new generation's state file is
written and fsynced first; the manifest is replaced afterwards, atomically. A crash at any
moment leaves either the old or the new generation committed, never a mix. Temporary files
and state files no manifest names are residue of a crash and are swept at start, never
promoted. A state whose manifest does not match (model, context size, library version, size,
checksum) is never loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import time
import uuid
from pathlib import Path
from typing import Any, Final

import attrs

_MAGIC: Final = b"AGTLKV1\n"
_TMP_MARK: Final = ".tmp-"


@attrs.frozen
class Prepared:
    """A written, not yet committed, generation of a key's state."""

    key: str
    generation: int
    path: Path
    size: int
    sha256: str
    tokens: int


@attrs.frozen
class Loaded:
    input_ids: list[int]
    state: bytes
    generation: int


class KVStore:
    def __init__(self, directory: Path, *, budget_bytes: int, identity: dict[str, Any]) -> None:
        self.directory = directory
        self.budget_bytes = budget_bytes
        self.identity = identity
        directory.mkdir(parents=True, exist_ok=True)
        self.swept = self._sweep()

    # -- reading --------------------------------------------------------------------------------
    def manifest(self, key: str) -> dict[str, Any] | None:
        try:
            data = json.loads((self.directory / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def load(self, key: str) -> tuple[Loaded | None, str | None]:
        """The committed state of ``key``, or ``None`` and why it was not loaded."""
        manifest = self.manifest(key)
        if manifest is None:
            return None, None
        if manifest.get("identity") != self.identity:
            return None, "saved for a different model, context size or library version"
        path = self.directory / str(manifest.get("file", ""))
        try:
            blob = path.read_bytes()
        except OSError:
            return None, "state file missing"
        if len(blob) != manifest.get("size") or hashlib.sha256(blob).hexdigest() != manifest.get(
            "sha256"
        ):
            return None, "state file does not match its manifest (size or checksum)"
        try:
            loaded = _decode(blob, int(manifest["generation"]))
        except (ValueError, KeyError, struct.error):
            return None, "state file is corrupt"
        with contextlib.suppress(OSError):
            os.utime(self.directory / f"{key}.json")  # most recently used
        return loaded, None

    # -- writing --------------------------------------------------------------------------------
    def prepare(self, key: str, input_ids: list[int], state: bytes) -> Prepared:
        """Write the next generation's state file (fsynced); nothing is committed yet."""
        manifest = self.manifest(key)
        generation = int(manifest["generation"]) + 1 if manifest else 1
        blob = _encode(input_ids, state)
        path = self.directory / f"{key}.{generation}.kv"
        _atomic_write(path, blob)
        return Prepared(
            key, generation, path, len(blob), hashlib.sha256(blob).hexdigest(), len(input_ids)
        )

    def commit(self, prepared: Prepared) -> None:
        """Make ``prepared`` the key's committed generation: replace the manifest atomically."""
        previous = self.manifest(prepared.key)
        manifest = {
            "key": prepared.key,
            "generation": prepared.generation,
            "file": prepared.path.name,
            "tokens": prepared.tokens,
            "size": prepared.size,
            "sha256": prepared.sha256,
            "identity": self.identity,
            "committed_at": time.time(),
        }
        _atomic_write(self.directory / f"{prepared.key}.json", json.dumps(manifest).encode())
        if previous and previous.get("file") != prepared.path.name:
            with contextlib.suppress(OSError):
                (self.directory / str(previous["file"])).unlink()
        self._evict(keep=prepared.key)

    def discard(self, prepared: Prepared) -> None:
        """Roll back: forget a generation that was written but not committed."""
        with contextlib.suppress(OSError):
            prepared.path.unlink()

    def delete(self, key: str) -> bool:
        manifest = self.manifest(key)
        removed = False
        for name in ([str(manifest["file"])] if manifest else []) + [f"{key}.json"]:
            with contextlib.suppress(OSError):
                (self.directory / name).unlink()
                removed = True
        return removed

    def keys(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("*.json") if _TMP_MARK not in p.name)

    def usage_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.directory.glob("*.kv"))

    # -- housekeeping -----------------------------------------------------------------------------
    def _sweep(self) -> list[str]:
        """Remove crash residue: temp files, and state files no manifest refers to."""
        swept: list[str] = []
        referenced = set()
        for path in self.directory.glob("*.json"):
            if _TMP_MARK in path.name:
                continue
            manifest = self.manifest(path.stem)
            if manifest and isinstance(manifest.get("file"), str):
                referenced.add(manifest["file"])
        for path in self.directory.iterdir():
            if _TMP_MARK in path.name or (path.suffix == ".kv" and path.name not in referenced):
                with contextlib.suppress(OSError):
                    path.unlink()
                    swept.append(path.name)
        return swept

    def _evict(self, *, keep: str) -> None:
        """Drop least-recently-used sessions until the state files fit the budget."""
        manifests = sorted(
            (p for p in self.directory.glob("*.json") if _TMP_MARK not in p.name),
            key=lambda p: p.stat().st_mtime,
        )
        total = self.usage_bytes()
        for path in manifests:
            if total <= self.budget_bytes:
                return
            if path.stem == keep:
                continue
            manifest = self.manifest(path.stem)
            size = int(manifest.get("size", 0)) if manifest else 0
            self.delete(path.stem)
            total -= size


def _encode(input_ids: list[int], state: bytes) -> bytes:
    ids = struct.pack(f"<{len(input_ids)}i", *input_ids)
    return _MAGIC + struct.pack("<II", len(input_ids), len(state)) + ids + state


def _decode(blob: bytes, generation: int) -> Loaded:
    if not blob.startswith(_MAGIC):
        raise ValueError("bad magic")
    offset = len(_MAGIC)
    n_ids, n_state = struct.unpack_from("<II", blob, offset)
    offset += 8
    if len(blob) != offset + 4 * n_ids + n_state:
        raise ValueError("bad length")
    ids = list(struct.unpack_from(f"<{n_ids}i", blob, offset))
    return Loaded(ids, blob[offset + 4 * n_ids :], generation)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a unique temp file in the same directory: flush, fsync, replace, fsync dir."""
    tmp = path.with_name(f".{path.name}{_TMP_MARK}{uuid.uuid4().hex}")
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
