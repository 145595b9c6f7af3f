"""KV-cache sessions on disk: one committed generation per key, written atomically.

Layout under ``cache_dir``: ``<key>.json`` (the manifest, the commit point) names
``<key>.<generation>.kv`` (token ids and llama.cpp's state). A new generation's state file is
written and fsynced first; the manifest is replaced afterwards, atomically. A crash at any
moment leaves either the old or the new generation committed, never a mix. Temporary files
and state files no manifest names are residue of a crash and are swept at start, never
promoted. A state whose manifest does not match (model, context size, library version, size,
checksum) is never loaded.

The store only ever reads, writes or deletes names of its own making: a manifest is trusted
only if its ``key`` and ``file`` fields have exactly that shape, so a damaged or hostile
manifest cannot point outside the directory, and the store leaves alone any other file that
shares the directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import struct
import time
import uuid
from pathlib import Path
from typing import Any, Final

import attrs

_MAGIC: Final = b"AGTLKV1\n"
_TMP_MARK: Final = ".tmp-"
#: The names the store writes: ``<key>.<generation>.kv`` and ``.<name>.tmp-<hex>`` temp files
#: (keys are validated by the core: ``[a-z0-9._-]``, no ``..``).
_STATE_FILE: Final = re.compile(r"(?P<key>[a-z0-9._-]+)\.(?P<generation>[1-9][0-9]*)\.kv")
_TEMP_FILE: Final = re.compile(r"\..+\.tmp-[0-9a-f]+")


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
        """``key``'s manifest, if there is one and it is whole and ours."""
        return self._read_manifest(key)[0]

    def _read_manifest(self, key: str) -> tuple[dict[str, Any] | None, str | None]:
        """The manifest, or ``None`` and why it is unusable (``None`` too when there is none)."""
        try:
            data = json.loads((self.directory / f"{key}.json").read_text())
        except FileNotFoundError:
            return None, None
        except (OSError, ValueError):
            return None, "its manifest is unreadable"
        if not isinstance(data, dict) or data.get("key") != key:
            return None, "its manifest is not an agtl KV manifest for this key"
        generation = data.get("generation")
        if (
            not isinstance(generation, int)
            or isinstance(generation, bool)
            or generation < 1
            or data.get("file") != f"{key}.{generation}.kv"
        ):
            # Never follow a file name we did not write: it could lead out of the directory.
            return None, "its manifest names a state file the store never writes"
        return data, None

    def load(self, key: str) -> tuple[Loaded | None, str | None]:
        """The committed state of ``key``, or ``None`` and why it was not loaded."""
        manifest, why = self._read_manifest(key)
        if manifest is None:
            return None, why
        if manifest.get("identity") != self.identity:
            return None, "saved for a different model, context size or library version"
        path = self.directory / manifest["file"]
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
        if previous and previous["file"] != prepared.path.name:
            with contextlib.suppress(OSError):
                (self.directory / previous["file"]).unlink()
        self._evict(keep=prepared.key)

    def discard(self, prepared: Prepared) -> None:
        """Roll back: forget a generation that was written but not committed."""
        with contextlib.suppress(OSError):
            prepared.path.unlink()

    def delete(self, key: str) -> bool:
        manifest = self.manifest(key)
        removed = False
        for name in ([manifest["file"]] if manifest else []) + [f"{key}.json"]:
            with contextlib.suppress(OSError):
                (self.directory / name).unlink()
                removed = True
        return removed

    def keys(self) -> list[str]:
        """Every key with a committed manifest of ours."""
        return sorted(
            p.stem
            for p in self.directory.glob("*.json")
            if not _TEMP_FILE.fullmatch(p.name) and self.manifest(p.stem) is not None
        )

    def usage_bytes(self) -> int:
        return sum(
            p.stat().st_size for p in self.directory.glob("*.kv") if _STATE_FILE.fullmatch(p.name)
        )

    # -- housekeeping -----------------------------------------------------------------------------
    def _sweep(self) -> list[str]:
        """Remove crash residue: temp files, and state files no manifest refers to."""
        swept: list[str] = []
        referenced = set()
        for path in self.directory.glob("*.json"):
            manifest = self.manifest(path.stem)
            if manifest is not None:
                referenced.add(manifest["file"])
        for path in self.directory.iterdir():
            name = path.name
            if _TEMP_FILE.fullmatch(name) or (
                _STATE_FILE.fullmatch(name) and name not in referenced
            ):
                with contextlib.suppress(OSError):
                    path.unlink()
                    swept.append(path.name)
        return swept

    def _evict(self, *, keep: str) -> None:
        """Drop least-recently-used sessions until the state files fit the budget."""
        keys = sorted(self.keys(), key=self._last_used)
        total = self.usage_bytes()
        for key in keys:
            if total <= self.budget_bytes:
                return
            if key == keep:
                continue
            manifest = self.manifest(key)
            size = manifest.get("size", 0) if manifest else 0
            self.delete(key)
            total -= size if isinstance(size, int) else 0

    def _last_used(self, key: str) -> float:
        try:
            return (self.directory / f"{key}.json").stat().st_mtime
        except OSError:
            return 0.0  # gone meanwhile: first in line, and deleting it is a no-op


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
