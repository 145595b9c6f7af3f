"""The runtime a provider hands down to each execution it creates.

Data flows one way: the user configures a :class:`~agtl.Provider`; when it creates an
execution it freezes what the execution will need into a :class:`Runtime` (how to start a
generation, the defaults, how to price a call, the logger, the summary sink) and hands that
down. Executions, sessions and streams depend on this value, never on ``Provider``, so the
core below the provider has no way, and no need, to call back up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal

import attrs

from agtl._vocabulary import Logger, ProviderInfo, SummarySink
from agtl.backend import GenerationRequest, GenerationStream
from agtl.journal import CallJournal
from agtl.options import GenerationOptions
from agtl.usage import Usage

__all__ = ["Runtime"]


@attrs.frozen(slots=True)
class Runtime:
    """What an execution needs from its provider, fixed when the execution is created."""

    #: Short backend name for summaries and logs ("llamacpp", "openai", ...).
    provider_name: str
    #: Starts one text generation (the backend's side of :mod:`agtl.backend`).
    start_generation: Callable[[GenerationRequest], Awaitable[GenerationStream]]
    default_model: str | None
    default_options: GenerationOptions
    #: The cost of a call's usage on a model: ``Decimal``, or ``None`` when the price is unknown.
    cost_of: Callable[[str, Usage], Decimal | None]
    logger: Logger
    summary_sink: SummarySink | None
    #: The provider as a workflow may see it (``session.provider``); the core never calls it.
    provider: ProviderInfo
    #: Records finished tool calls and replays an earlier attempt's (its LLM calls go through
    #: ``start_generation``, which it wraps).
    journal: CallJournal | None = None
