"""Connecting to Temporal: Temporal's own client configuration first, then the arguments.

Temporal's tools share one way to say where the server is and how to reach it: a profile of a
TOML file (``TEMPORAL_CONFIG_FILE``, or the default location) and ``TEMPORAL_*`` environment
variables (``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``,
``TEMPORAL_TLS``, ``TEMPORAL_TLS_CLIENT_CERT_PATH``, ...). agtl reads them through the SDK's
:mod:`temporalio.envconfig`, so a worker set up for the ``temporal`` CLI or Temporal Cloud
connects the same way, and an API key stays in the environment or that file: it is never in
agtl's arguments, logs or errors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.envconfig import ClientConfig

from agtl.errors import AgtlError
from agtl.validation import check_str

__all__ = [
    "DEFAULT_ADDRESS",
    "TemporalConfigError",
    "TemporalUnavailableError",
    "connect",
    "connect_options",
]

#: Where a client connects when neither the arguments nor Temporal's configuration say.
DEFAULT_ADDRESS = "127.0.0.1:7233"


class TemporalUnavailableError(AgtlError, ConnectionError):
    """The Temporal server could not be reached."""


class TemporalConfigError(AgtlError, ValueError):
    """Temporal's client configuration (its profile file or a ``TEMPORAL_*`` variable) is wrong."""


def connect_options(
    address: str | None = None,
    *,
    namespace: str | None = None,
    profile: str | None = None,
) -> dict[str, Any]:
    """The keyword arguments of ``Client.connect``, from lowest to highest precedence: the
    profile (``profile``, else ``TEMPORAL_PROFILE``, else "default") of Temporal's config
    file, the ``TEMPORAL_*`` variables, then ``address`` and ``namespace``. Unset, the address
    is 127.0.0.1:7233 and the namespace "default".
    """
    if address is not None:
        check_str("address", address)
    if namespace is not None:
        check_str("namespace", namespace)
    if profile is not None:
        check_str("profile", profile)
    named_file = os.environ.get("TEMPORAL_CONFIG_FILE")
    if named_file and not Path(named_file).expanduser().is_file():
        # Temporal's loader would go on without it; a file named on purpose must be there.
        raise TemporalConfigError(f"TEMPORAL_CONFIG_FILE={named_file}: no such file")
    try:
        options: dict[str, Any] = dict(ClientConfig.load_client_connect_config(profile))
    except OSError as error:  # a certificate or key file the configuration names
        raise TemporalConfigError(
            f"Temporal's client configuration names {error.filename}, which cannot be read "
            f"({error.strerror})"
        ) from None
    except (RuntimeError, ValueError) as error:  # the SDK's ConfigError is a RuntimeError
        raise TemporalConfigError(f"Temporal's client configuration: {error}") from None
    if address is not None:
        options["target_host"] = address
    if namespace is not None:
        options["namespace"] = namespace
    options.setdefault("target_host", DEFAULT_ADDRESS)
    options.setdefault("namespace", "default")
    return options


async def connect(
    address: str | None = None,
    *,
    namespace: str | None = None,
    profile: str | None = None,
    **options: Any,
) -> Client:
    """A Temporal client, set up as :func:`connect_options` says (``options`` go to
    ``Client.connect`` over it), or a clear error naming the address when nothing answers.
    """
    settings = {**connect_options(address, namespace=namespace, profile=profile), **options}
    try:
        return await Client.connect(**settings)
    except RuntimeError as error:
        where = f"{settings['target_host']} (namespace {settings['namespace']!r})"
        detail = _without(str(error), settings.get("api_key"))
        hint = "is the server running there? (a local one: temporal server start-dev)"
        if settings.get("tls"):
            hint = (
                "TLS is on (TEMPORAL_TLS, a certificate or an API key turn it on): does the "
                "server speak TLS? A local dev server does not: TEMPORAL_TLS=false"
            )
        message = f"cannot reach Temporal at {where}: {detail}; {hint}"
        raise TemporalUnavailableError(message) from None


def _without(text: str, secret: object) -> str:
    """``text`` with ``secret`` blanked out: an API key never reaches an error message."""
    if isinstance(secret, str) and secret:
        return text.replace(secret, "[redacted]")
    return text
