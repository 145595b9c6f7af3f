"""agtl provider for OpenAI and every OpenAI-compatible server."""

from agtl_openai.provider import OFFICIAL_BASE_URL, OpenAIProvider

__all__ = ["OFFICIAL_BASE_URL", "OpenAIProvider"]
