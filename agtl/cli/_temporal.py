"""What `agtl worker` and `agtl report --temporal` share: where the Temporal server is.

The flags override Temporal's own client configuration (a profile of its TOML file and the
``TEMPORAL_*`` variables, as the ``temporal`` CLI reads them), so TLS and an API key for
Temporal Cloud come from the environment and never from the command line.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from agtl.cli._common import CliError

if TYPE_CHECKING:
    from temporalio.client import Client

#: The epilog of the commands that connect (their formatter keeps these line breaks).
CONFIG_HELP = (
    "where Temporal is: the flags, else Temporal's client configuration as the temporal CLI\n"
    "reads it (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS*, and the\n"
    "profile file, TEMPORAL_CONFIG_FILE), else 127.0.0.1:7233, namespace default. An API key\n"
    "turns TLS on; a local dev server needs TEMPORAL_TLS=false beside it."
)


def add_connection_arguments(parser: argparse.ArgumentParser, *, prefix: str = "") -> None:
    """``--namespace`` and ``--profile`` (``prefix`` names the command that needs them)."""
    parser.add_argument(
        "--namespace", default=None, help=f"{prefix}the Temporal namespace (default: default)"
    )
    parser.add_argument(
        "--profile",
        default=None,
        help=f"{prefix}the profile of Temporal's config file (default: TEMPORAL_PROFILE, or "
        "default)",
    )


async def connect(address: str | None, namespace: str | None, profile: str | None) -> Client:
    """A Temporal client, or the user's mistake as a one-line error."""
    try:
        from agtl import temporal
    except ImportError:
        raise CliError("this needs the Temporal extra", "pip install 'agtl[temporal]'") from None
    try:
        return await temporal.connect(address or None, namespace=namespace, profile=profile)
    except (temporal.TemporalUnavailableError, temporal.TemporalConfigError) as error:
        raise CliError(str(error)) from None


def address_of(client: Client) -> str:
    """Where ``client`` is connected ("host:port")."""
    return client.service_client.config.target_host
