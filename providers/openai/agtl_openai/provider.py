"""OpenAIProvider: OpenAI and every OpenAI-compatible server through ``openai.AsyncOpenAI``."""

from __future__ import annotations

import os
from typing import Final

import openai

from agtl import GenerationRequest, GenerationStream, InvalidArgumentError, Provider
from agtl.validation import check_count, check_seconds, require_trio
from agtl_openai._request import ServerQuirks
from agtl_openai._stream import Connection, OpenAIStream

__all__ = ["OpenAIProvider"]

OFFICIAL_BASE_URL: Final = "https://api.openai.com/v1"
# Compatible servers often need no key; the SDK insists on one, so we send this.
_NO_KEY: Final = "not-needed"


class OpenAIProvider(Provider):
    """Talks to OpenAI or any OpenAI-compatible server (vLLM, llama.cpp server, Ollama, ...).

    The key falls back to ``OPENAI_API_KEY``; the official endpoint without a key is a
    configuration error, a compatible ``base_url`` may go without. Retries happen only before
    the first byte of a stream (``max_retries`` more attempts), honour ``retry-after``, and
    are listed in each call's ``details["attempts"]``. Close the provider (``async with`` or
    ``aclose()``) to close its HTTP client.
    """

    name = "openai"
    is_local = False

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        organization: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        stream_usage: bool = True,
    ) -> None:
        super().__init__()
        self.max_retries = check_count("max_retries", max_retries)
        seconds = check_seconds("timeout", timeout)
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        if base_url is not None and (
            not isinstance(base_url, str) or not base_url.startswith(("http://", "https://"))
        ):
            raise InvalidArgumentError(
                "base_url",
                f"must be an http:// or https:// URL such as 'http://127.0.0.1:8080/v1', "
                f"not {base_url!r}",
            )
        official = base_url is None or base_url.rstrip("/") == OFFICIAL_BASE_URL
        if not key and official:
            raise InvalidArgumentError(
                "api_key",
                "no API key for the OpenAI API: pass api_key=... or set OPENAI_API_KEY "
                "(or pass base_url=... for a compatible server that needs none)",
            )
        self._secret = key or None
        self.base_url = (base_url or OFFICIAL_BASE_URL).rstrip("/")
        # What we learn about the server, shared by every with_* copy of this provider.
        self.quirks = ServerQuirks(stream_usage=stream_usage)
        self.client = openai.AsyncOpenAI(
            api_key=key or _NO_KEY,
            base_url=self.base_url,
            organization=organization,
            timeout=seconds,
            max_retries=0,  # agtl retries itself, before the first byte only, and counts attempts
        )
        # What each stream needs, and nothing more: streams never see the provider.
        self._connection = Connection(self.client, self._secret, self.max_retries, self.quirks)

    @property
    def secret(self) -> str | None:
        """The API key, for scrubbing it from messages. Never logged or shown in a repr."""
        return self._secret

    async def start_generation(self, request: GenerationRequest) -> GenerationStream:
        return OpenAIStream(self._connection, request)

    async def aclose(self) -> None:
        require_trio("OpenAIProvider.aclose()")
        await self.client.close()

    def __repr__(self) -> str:
        return f"OpenAIProvider(base_url={self.base_url!r}, model={self.default_model!r})"
