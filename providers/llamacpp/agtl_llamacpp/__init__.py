"""agtl provider for local GGUF models through llama-cpp-python."""

from agtl_llamacpp._model_file import ModelLoadError, bundled_model_path
from agtl_llamacpp.provider import BUNDLED_SYSTEM_PROMPT, LlamaCppProvider

__all__ = ["BUNDLED_SYSTEM_PROMPT", "LlamaCppProvider", "ModelLoadError", "bundled_model_path"]
