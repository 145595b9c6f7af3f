"""The provider base: fluent immutable configuration and the two ways to run a workflow.

The provider is the top of the one-way flow: it holds the user's configuration and the
backend, and when it creates an execution it hands down a frozen :class:`~agtl._runtime.Runtime`
with everything the execution will need. Nothing below calls back into the provider.
"""

from __future__ import annotations

import abc
import copy
import threading
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar

import attrs
import structlog

from agtl._attempts import Candidate
from agtl._fallback import Chain, Health
from agtl._hedge import Hedge
from agtl._limiter import SharedLimits
from agtl._logging import default_logger
from agtl._runtime import Runtime
from agtl._vocabulary import Logger, SummarySink
from agtl.backend import GenerationRequest, GenerationStream, StartGeneration
from agtl.errors import InvalidArgumentError, LLMError
from agtl.events import Event
from agtl.execution import SimpleExecution, StreamingExecution
from agtl.guardrails import Guardrail, check_guardrails
from agtl.journal import CallJournal
from agtl.limits import UsageLimits
from agtl.options import GenerationOptions
from agtl.pricing import BUNDLED_PRICING, Price, PricingTable
from agtl.session import Session, TextResult
from agtl.signals import CancelSignal
from agtl.tools import Tool
from agtl.usage import Usage
from agtl.validation import (
    check_count,
    check_optional_seconds,
    check_seconds,
    check_str,
    require_trio,
    type_name,
)

__all__ = ["FallbackProvider", "HedgedProvider", "Provider"]

T = TypeVar("T")

_warned_unpriced: set[str] = set()
_warned_lock = threading.Lock()


@attrs.frozen
class _Config:
    default_model: str | None = None
    default_options: GenerationOptions = attrs.Factory(GenerationOptions)
    price_overrides: PricingTable = attrs.Factory(lambda: PricingTable(prices={}))
    # Resolved prices per model name; the config is immutable, so the cache never goes stale.
    price_cache: dict[str, Price | None] = attrs.field(factory=dict, eq=False, repr=False)
    #: The Runtime handed to executions, by whether structlog was configured when it was made.
    runtimes: dict[bool, Runtime] = attrs.field(factory=dict, eq=False, repr=False)
    logger: Logger | None = None
    summary_sink: SummarySink | None = None
    journal: CallJournal | None = None
    limits: SharedLimits | None = None


class Provider(abc.ABC):
    """A model backend plus the configuration every execution on it uses.

    ``with_*`` methods return a new provider that shares the backend (a loaded model, an
    HTTP client) and differs only in configuration; the original is unchanged.
    Subclasses implement :meth:`start_generation`.
    """

    #: Short backend name used in summaries and pricing keys ("llamacpp", "openai", ...).
    name: ClassVar[str] = "provider"
    #: Local backends cost nothing: their calls are priced at 0 unless overridden.
    is_local: ClassVar[bool] = False

    def __init__(self) -> None:
        self._config = _Config()

    # -- configuration ----------------------------------------------------------------------
    @property
    def default_model(self) -> str | None:
        return self._config.default_model or self._builtin_model()

    @property
    def default_options(self) -> GenerationOptions:
        return self._config.default_options

    @property
    def pricing(self) -> PricingTable:
        """The bundled table with this provider's overrides applied."""
        return BUNDLED_PRICING.merged(self._config.price_overrides)

    @property
    def logger(self) -> Logger:
        """The structlog logger executions bind their context to.

        The one given to :meth:`with_logger`; else ``structlog.get_logger("agtl")`` once the
        application configured structlog; else a logger printing warnings to stderr only.
        """
        logger = self._config.logger
        return default_logger() if logger is None else logger

    def with_default_model(self, name: str) -> Self:
        return self._evolve(default_model=check_str("name", name))

    def with_default_options(self, **options: Any) -> Self:
        """Defaults for every call (max_tokens, temperature, ...); per-call values win."""
        merged = self._config.default_options.merged(GenerationOptions.from_kwargs(options))
        return self._evolve(default_options=merged)

    def with_pricing(
        self,
        prices: Mapping[str, Price] | None = None,
        *,
        aliases: Mapping[str, str] | None = None,
    ) -> Self:
        """Override prices (USD per million tokens) per model, and add model-name aliases."""
        overrides = PricingTable(prices=prices or {}, aliases=aliases or {})
        return self._evolve(price_overrides=self._config.price_overrides.merged(overrides))

    def with_logger(self, logger: Logger) -> Self:
        """Use this structlog logger (agtl binds per-execution context to it)."""
        if not callable(getattr(logger, "bind", None)):
            raise InvalidArgumentError(
                "logger", f"must be a structlog logger, not {type_name(logger)}"
            )
        return self._evolve(logger=logger)

    def with_summary_sink(self, sink: SummarySink | None) -> Self:
        """Write every execution's record to ``sink`` (e.g. ``agtl.reporting.JsonlSink``)."""
        if sink is not None and not callable(getattr(sink, "write", None)):
            raise InvalidArgumentError(
                "sink", f"must have a write(result) method, not {type_name(sink)}"
            )
        return self._evolve(summary_sink=sink)

    @property
    def summary_sink(self) -> SummarySink | None:
        return self._config.summary_sink

    def with_journal(self, journal: CallJournal | None) -> Self:
        """Record every finished call in ``journal`` and replay the calls it holds.

        For one execution: a new attempt of an execution that was interrupted gets the
        earlier attempt's calls back without calling the model (see :mod:`agtl.journal`).
        """
        if journal is not None and not isinstance(journal, CallJournal):
            raise InvalidArgumentError(
                "journal", f"must be an agtl.CallJournal, not {type_name(journal)}"
            )
        return self._evolve(journal=journal)

    def with_limits(
        self,
        *,
        max_concurrent: int | None = None,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
    ) -> Self:
        """Limits every execution on this provider and its ``with_*`` copies shares: calls
        running at once, calls started and tokens used per minute. A call waits for its turn
        (first come, first served) at its start, inside the call: every cancel and the call's
        deadlines reach the wait, and ``queue_wait`` in its summary records it. A 429 from the
        server pauses every call for its ``retry-after`` and halves the concurrency, which
        grows back by one after each run of that many calls that end well."""
        limits = SharedLimits(
            max_concurrent=max_concurrent,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
        )
        return self._evolve(limits=limits)

    @property
    def limits(self) -> SharedLimits | None:
        """The limits this provider's calls share (``with_limits``), with their state now."""
        return self._config.limits

    def with_fallback(
        self,
        other: Provider,
        *more: Provider,
        on: FallbackOn = None,
        first_token_timeout: float | None = None,
        max_wait: float = 1.0,
        failures: int = 5,
        cooldown: float = 30.0,
    ) -> FallbackProvider:
        """This provider first, then ``other`` (and ``more``) when a call fails before its
        first output: see :class:`FallbackProvider`."""
        return FallbackProvider(
            self,
            other,
            *more,
            on=on,
            first_token_timeout=first_token_timeout,
            max_wait=max_wait,
            failures=failures,
            cooldown=cooldown,
        )

    def with_hedge(self, other: Provider, *, after: float | str) -> HedgedProvider:
        """This provider, and ``other`` too when no output came within ``after`` seconds
        (or ``"p95"``): see :class:`HedgedProvider`."""
        return HedgedProvider(self, other, after=after)

    def _evolve(self, **changes: Any) -> Self:
        clone = copy.copy(self)
        clone._config = attrs.evolve(self._config, price_cache={}, runtimes={}, **changes)
        return clone

    def _runtime(self) -> Runtime:
        """What a new execution is handed: made once per configuration, and again if the
        application configures structlog meanwhile (the default logger depends on it)."""
        config = self._config
        key = config.logger is None and structlog.is_configured()
        runtime = config.runtimes.get(key)
        if runtime is None:
            runtime = config.runtimes[key] = Runtime(
                provider_name=self.name,
                start_generation=self._start_generation(config),
                default_model=config.default_model or self._builtin_model(),
                default_options=config.default_options,
                cost_of=self.cost_of,
                logger=default_logger() if config.logger is None else config.logger,
                summary_sink=config.summary_sink,
                provider=self,
                journal=config.journal,
            )
        return runtime

    def _start_generation(self, config: _Config) -> StartGeneration:
        """How an execution starts a call: the backend, behind the shared limits, behind
        the journal (a replayed call waits for nothing)."""
        start: StartGeneration = self.start_generation
        if config.limits is not None:
            start = config.limits.wrap(start)
        if config.journal is not None:
            start = config.journal.wrap(start)
        return start

    def _builtin_model(self) -> str | None:
        """The model used when none is configured or passed; backends override it."""
        return None

    # -- pricing ------------------------------------------------------------------------------
    def price_for(self, model: str) -> Price | None:
        """The price of ``model``: an override, else free if local, else the bundled table.

        ``None`` means unknown: such calls get cost ``None`` and one warning per model.
        """
        cache = self._config.price_cache
        if model in cache:
            return cache[model]
        price = self._config.price_overrides.lookup(model)
        if price is None:
            price = Price.free() if self.is_local else BUNDLED_PRICING.lookup(model)
        cache[model] = price
        return price

    def cost_of(self, model: str, usage: Usage) -> Decimal | None:
        price = self.price_for(model)
        if price is None:
            key = f"{self.name}/{model}"
            with _warned_lock:
                first = key not in _warned_unpriced
                _warned_unpriced.add(key)
            if first:
                self.logger.warning(
                    "pricing.unknown_model",
                    model=key,
                    hint="cost is None; set a price with provider.with_pricing({...})",
                )
            return None
        return price.cost(usage)

    # -- executions ---------------------------------------------------------------------------
    def simple_execution(
        self,
        fn: Callable[[Session], Awaitable[T]],
        *,
        signal: CancelSignal | Sequence[CancelSignal] | None = None,
        timeout: float | None = None,
        limits: UsageLimits | None = None,
    ) -> SimpleExecution[T]:
        """An execution of ``async def fn(session) -> value``; it starts when entered or awaited."""
        return SimpleExecution(self._runtime(), fn, signal=signal, timeout=timeout, limits=limits)

    def streaming_execution(
        self,
        gen: Callable[[Session], AsyncIterator[Event]],
        *,
        signal: CancelSignal | Sequence[CancelSignal] | None = None,
        timeout: float | None = None,
        limits: UsageLimits | None = None,
        buffer_size: int | None = None,
    ) -> StreamingExecution[Any]:
        """An execution of an async generator ``gen(session)`` that yields events.

        ``buffer_size`` bounds how far any consumer of ``execution.stream()`` may lag behind
        before the generator is paused at its next ``yield`` (``None``: no bound).
        """
        return StreamingExecution(
            self._runtime(),
            gen,
            signal=signal,
            timeout=timeout,
            limits=limits,
            buffer_size=buffer_size,
        )

    def generate_text(
        self,
        prompt: str | None = None,
        *,
        messages: Any = None,
        system: str | None = None,
        model: str | None = None,
        tools: Sequence[Tool] | None = None,
        tool_choice: str | None = None,
        max_steps: int | None = None,
        approval_timeout: float | None = None,
        on_max_steps: str = "raise",
        signal: CancelSignal | Sequence[CancelSignal] | None = None,
        execution_timeout: float | None = None,
        first_token_timeout: float | None = None,
        stall_timeout: float | None = None,
        limits: UsageLimits | None = None,
        timeout: float | None = None,
        input_guardrails: Sequence[Guardrail] = (),
        output_guardrails: Sequence[Guardrail] = (),
        **options: Any,
    ) -> SimpleExecution[TextResult]:
        """Ask one question: an execution of one ``session.generate_text`` call.

        Its Result's value is the :class:`~agtl.TextResult`. ``await`` it in trio code,
        pass it to :func:`agtl.run` in synchronous code, or to :func:`agtl.aio.result` in
        asyncio code. ``execution_timeout`` bounds the whole execution (every model call and
        tool of it); ``first_token_timeout`` and ``stall_timeout`` bound each model call, and
        the other arguments are those of :meth:`Session.generate_text`, checked here.

        ``timeout=`` is the old name of ``execution_timeout=`` and is deprecated: in
        ``session.generate_text`` the same word bounds each model call.
        """
        if timeout is not None:
            if execution_timeout is not None:
                raise InvalidArgumentError(
                    "timeout", "pass execution_timeout= only (timeout= is its deprecated name)"
                )
            warnings.warn(
                "provider.generate_text(timeout=) is deprecated: use execution_timeout=, which "
                "bounds the whole execution (session.generate_text(timeout=) bounds each model "
                "call)",
                DeprecationWarning,
                stacklevel=2,
            )
            execution_timeout = timeout
        if prompt is None and messages is None:
            raise InvalidArgumentError("prompt", "pass prompt=... (or messages=[...])")
        if prompt is not None:
            check_str("prompt", prompt)
        check_optional_seconds("first_token_timeout", first_token_timeout)
        check_optional_seconds("stall_timeout", stall_timeout)
        checks_input = check_guardrails("input_guardrails", input_guardrails)
        checks_output = check_guardrails("output_guardrails", output_guardrails)
        GenerationOptions.from_kwargs(options)  # an unknown or bad option fails here

        async def ask(session: Session) -> TextResult:
            return await session.generate_text(
                prompt=prompt,
                messages=messages,
                system=system,
                model=model,
                tools=tools,
                tool_choice=tool_choice,
                max_steps=max_steps,
                approval_timeout=approval_timeout,
                on_max_steps=on_max_steps,
                first_token_timeout=first_token_timeout,
                stall_timeout=stall_timeout,
                input_guardrails=checks_input,
                output_guardrails=checks_output,
                **options,
            )

        return self.simple_execution(ask, signal=signal, timeout=execution_timeout, limits=limits)

    # -- backend --------------------------------------------------------------------------------
    @abc.abstractmethod
    async def start_generation(self, request: GenerationRequest) -> GenerationStream:
        """Start one text generation (waiting for capacity if needed) and return its stream.

        Waiting must be cancellable; a request cancelled while waiting must not reach the model.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional for backends
        """Release the backend's resources (models, clients). The base has none."""

    async def __aenter__(self) -> Self:
        require_trio("`async with provider`")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.default_model!r})"


#: What a fallback chain falls back on: a predicate on the error, or error types.
FallbackOn = Callable[[LLMError], bool] | type[LLMError] | tuple[type[LLMError], ...] | None


class FallbackProvider(Provider):
    """Providers in order: a call that fails before its first output goes to the next one.

    It falls back on an error ``on`` accepts (default: a retryable one: a refused or broken
    connection, a 5xx, a transport timeout, a 429 whose ``retry-after`` is longer than
    ``max_wait`` seconds) and when no output came within ``first_token_timeout``. A provider
    with another after it does not back off and retry by itself: only a server's own
    ``retry-after`` of at most ``max_wait`` is waited out; the last provider retries as
    usual. After the first output it never falls back: the text is already the user's. The
    first provider gets the call's model, the others their own default model. Each
    provider's shared limits (``with_limits``) still apply to its calls.

    Every attempt is in the call's ``details["attempts"]`` (provider, model, outcome, error,
    seconds, usage, cost); the call's usage and cost sum them, each priced by its own
    provider. A circuit breaker per provider passes one over for ``cooldown`` seconds after
    ``failures`` failed attempts in a row, then lets one call probe it: :meth:`health`.
    Closing this provider closes the providers it holds.
    """

    name = "fallback"

    def __init__(
        self,
        primary: Provider,
        *others: Provider,
        on: FallbackOn = None,
        first_token_timeout: float | None = None,
        max_wait: float = 1.0,
        failures: int = 5,
        cooldown: float = 30.0,
    ) -> None:
        super().__init__()
        providers = (primary, *others)
        for index, provider in enumerate(providers):
            if not isinstance(provider, Provider):
                raise InvalidArgumentError(
                    "primary" if index == 0 else "others",
                    f"must be agtl providers, not {type_name(provider)}",
                )
        if not others:
            raise InvalidArgumentError("others", "a fallback needs at least two providers")
        self.providers = providers
        self._chain = Chain(
            [_candidate(p) for p in providers],
            on=_falls_back_on(on),
            first_token_timeout=check_optional_seconds("first_token_timeout", first_token_timeout),
            max_wait=check_seconds("max_wait", max_wait),
            failures=check_count("failures", failures, minimum=1),
            cooldown=check_seconds("cooldown", cooldown),
        )

    def _builtin_model(self) -> str | None:
        return self.providers[0].default_model

    def health(self) -> tuple[Health, ...]:
        """Each provider's breaker now: closed, open (and for how long) or half-open."""
        return self._chain.health()

    async def start_generation(self, request: GenerationRequest) -> GenerationStream:
        return await self._chain.start(request)

    async def aclose(self) -> None:
        for provider in self.providers:
            await provider.aclose()

    def __repr__(self) -> str:
        return f"FallbackProvider({', '.join(repr(p) for p in self.providers)})"


class HedgedProvider(Provider):
    """A provider whose slow calls are hedged: when ``primary`` has given no output after
    ``after`` seconds, the same request also goes to ``other`` (which may be the same
    provider), and the first to give output wins; the other is cancelled at once and kept in
    the call's ``details["attempts"]`` as ``lost``, with what it used and cost, which the
    call's usage and cost include. ``after="p95"`` hedges at the 95th percentile of the
    primary's time to first output over the last 100 calls through this provider (1 s until
    20 are known). An attempt that fails before its output leaves the race to the other."""

    name = "hedged"

    def __init__(self, primary: Provider, other: Provider, *, after: float | str) -> None:
        super().__init__()
        for name, provider in (("primary", primary), ("other", other)):
            if not isinstance(provider, Provider):
                raise InvalidArgumentError(
                    name, f"must be an agtl provider, not {type_name(provider)}"
                )
        if after == "p95":
            fixed = None
        elif isinstance(after, str):
            raise InvalidArgumentError("after", f"must be seconds or 'p95', not {after!r}")
        else:
            fixed = check_seconds("after", after)
        self.providers = (primary, other)
        self._hedge = Hedge(_candidate(primary), _candidate(other), fixed)

    @property
    def after(self) -> float:
        """Seconds without output before a call is hedged, now."""
        return self._hedge.after

    def _builtin_model(self) -> str | None:
        return self.providers[0].default_model

    async def start_generation(self, request: GenerationRequest) -> GenerationStream:
        return await self._hedge.start(request)

    async def aclose(self) -> None:
        for provider in dict.fromkeys(self.providers):  # the same provider once
            await provider.aclose()


def _candidate(provider: Provider) -> Candidate:
    """A provider as a fallback or hedge sends calls to it: behind its shared limits."""
    start: StartGeneration = provider.start_generation
    if provider.limits is not None:
        start = provider.limits.wrap(start)
    return Candidate(provider.name, provider.default_model, start, provider.cost_of)


def _falls_back_on(on: FallbackOn) -> Callable[[LLMError], bool]:
    if on is None:
        return lambda error: error.is_retryable
    if isinstance(on, (type, tuple)):
        kinds = on if isinstance(on, tuple) else (on,)
        if not all(isinstance(k, type) and issubclass(k, LLMError) for k in kinds):
            raise InvalidArgumentError("on", "error types must be agtl.LLMError subclasses")
        return lambda error: isinstance(error, kinds)
    if callable(on):
        return on
    raise InvalidArgumentError(
        "on", f"must be a predicate on the error or LLMError types, not {type_name(on)}"
    )
