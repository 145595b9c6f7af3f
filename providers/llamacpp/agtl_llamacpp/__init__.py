"""agtl provider for local GGUF models through llama-cpp-python."""

from agtl_llamacpp._model_file import ModelLoadError, bundled_model_path
from agtl_llamacpp.provider import LlamaCppProvider

__all__ = ["LlamaCppProvider", "ModelLoadError", "bundled_model_path"]
