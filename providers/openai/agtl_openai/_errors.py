"""SDK and transport failures as typed agtl errors, with the API key scrubbed from messages."""

from __future__ import annotations

import email.utils
import time

import openai

import agtl

PROVIDER = "openai"


def redact(text: str, secret: str | None) -> str:
    if secret and len(secret) >= 4:
        text = text.replace(secret, "***")
    return text


def retry_after(error: openai.APIStatusError) -> float | None:
    """The server's retry hint in seconds (``retry-after-ms``, ``retry-after`` seconds or date)."""
    headers = error.response.headers
    try:
        if "retry-after-ms" in headers:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value)
            return max(0.0, parsed.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def translate(
    error: BaseException, secret: str | None, url: str, model: str | None = None
) -> agtl.LLMError:
    """The agtl error for an exception raised by the SDK or its HTTP transport.

    Every message names the server's URL (never the key): a wrong base path or a closed port
    is then obvious from the error alone.
    """
    message = redact(str(error), secret)
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        if status == 429:
            return agtl.RateLimitError(
                f"{message} (from {url})",
                retry_after=retry_after(error),
                provider=PROVIDER,
                status_code=status,
            )
        lowered = message.lower()
        if (
            status in (400, 413, 422)
            and "context" in lowered
            and ("length" in lowered or "maximum" in lowered)
        ):
            return agtl.ContextLengthError(None, None, detail=f"{message} (from {url})")
        kind: type[agtl.ProviderError] = {
            401: agtl.AuthenticationError,
            403: agtl.PermissionDeniedError,
            404: agtl.ModelNotFoundError,
            400: agtl.BadRequestError,
            413: agtl.BadRequestError,
            422: agtl.BadRequestError,
        }.get(status, agtl.ServerError if status >= 500 else agtl.ProviderError)
        text = f"{message} (from {url})"
        if status == 404:
            text = (
                f"{message}: {url}/chat/completions or the model {model!r} was not found; check "
                "the model name, and that base_url ends where the server's API starts "
                "(usually .../v1)"
            )
        return kind(text, provider=PROVIDER, status_code=status)
    if isinstance(error, openai.APITimeoutError):
        return agtl.ProviderTimeoutError(
            f"request to {url} timed out: {message}", provider=PROVIDER
        )
    if isinstance(error, openai.APIConnectionError):
        cause = error.__cause__ or error.__context__
        detail = f"{message} ({redact(str(cause), secret)})" if cause is not None else message
        return agtl.ProviderConnectionError(
            f"connection to {url} failed: {detail}; is the server running there?",
            provider=PROVIDER,
        )
    return agtl.ProviderConnectionError(
        f"the stream from {url} broke: {type(error).__name__}: {message}", provider=PROVIDER
    )
