"""Naming, loading and binding a workflow: the one way ``agtl run``, ``agtl serve`` and
``agtl.temporal`` do it, so that the three cannot drift apart.

A workflow is named ``file.py:function`` (a file, as the command line takes it) or
``package.module:function`` (an import path, as a Temporal worker takes it). It is an
``async def`` function or an async generator taking the session, and the input too when it
has a second parameter. Every mistake is an :class:`~agtl.InvalidArgumentError` for
``workflow`` that says what was wrong and what is expected.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import sys
import traceback
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from agtl._observe import workflow_name
from agtl._vocabulary import SessionType
from agtl.errors import InvalidArgumentError
from agtl.events import Event

__all__ = [
    "bind",
    "check",
    "home_of",
    "is_streaming",
    "load",
    "load_object",
    "takes_input",
]

#: What a workflow is, said in every message about a wrong one.
EXPECTED = (
    "an async function or async generator taking a session (and the input, if it has a "
    "second parameter)"
)


def load(target: str, *, argument: str = "workflow", files: bool = True) -> Callable[..., Any]:
    """The workflow ``target`` names (``file.py:function`` or ``package.module:function``;
    with ``files=False`` an import path only, as for workers elsewhere), checked to be one."""
    fn = load_object(target, argument, files=files)
    check(fn, argument=argument, label=target)
    return fn  # type: ignore[no-any-return]


def load_object(target: str, argument: str, *, files: bool = True) -> Any:
    """The object ``file.py:name`` or ``package.module:name`` names, or a clear error."""
    if not isinstance(target, str):
        raise InvalidArgumentError(argument, f"must be a str, not {type(target).__name__}")
    expected = (
        "FILE.py:FUNCTION or package.module:FUNCTION"
        if files
        else "an import path package.module:FUNCTION (workers import it)"
    )
    where, sep, name = target.rpartition(":")
    file_like = where.endswith(".py") or "/" in where or "\\" in where
    if not sep or not where or not name or (file_like and not files):
        raise InvalidArgumentError(argument, f"expected {expected}, got {target!r}")
    if file_like:
        module = _from_file(Path(where), argument)
    else:
        if not all(part.isidentifier() for part in (*where.split("."), *name.split("."))):
            raise InvalidArgumentError(argument, f"expected {expected}, got {target!r}")
        try:
            module = importlib.import_module(where)
        except ImportError as error:
            raise InvalidArgumentError(
                argument, f"cannot import {where!r} for {target!r}: {error}"
            ) from None
    found: Any = module
    for part in name.split("."):
        if not hasattr(found, part):
            candidates = sorted(
                n
                for n, v in vars(module).items()
                if inspect.iscoroutinefunction(v) or inspect.isasyncgenfunction(v)
            )
            raise InvalidArgumentError(
                argument,
                f"{where} has no {name!r} (workflows in it: {', '.join(candidates) or 'none'})",
            )
        found = getattr(found, part)
    if inspect.isfunction(found) and found.__globals__ is not vars(module):
        # Made elsewhere (an agent's ready workflow): its home is where it was named.
        found.__agtl_module__ = module  # type: ignore[attr-defined]
    return found


def home_of(workflow: Any) -> dict[str, Any]:
    """The globals of the module a loaded workflow was named in (for its ``agtl_provider``)."""
    module = getattr(workflow, "__agtl_module__", None)
    if module is not None:
        home: dict[str, Any] = vars(module)
        return home
    found: dict[str, Any] = getattr(workflow, "__globals__", {})
    return found


def _from_file(path: Path, argument: str) -> Any:
    """The module of ``path``, or one line naming the user's code that broke it."""
    if not path.is_file():
        raise InvalidArgumentError(argument, f"no such file: {path}")
    spec = importlib.util.spec_from_file_location(f"agtl_workflow_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise InvalidArgumentError(argument, f"cannot load {path} as Python")
    module = importlib.util.module_from_spec(spec)
    # Registered as imported modules are, so that what looks its module up (dataclasses,
    # pickle, typing) finds it.
    sys.modules[spec.name] = module
    sys.path.insert(0, str(path.resolve().parent))  # the file's neighbours import as usual
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        sys.modules.pop(spec.name, None)
        where = f"{error.filename or path}, line {error.lineno}"
        raise InvalidArgumentError(
            argument, f"{path} does not compile: {where}: {error.msg}"
        ) from None
    except Exception as error:
        sys.modules.pop(spec.name, None)
        raised = f"{type(error).__name__} as it loaded: {error}{_own_frame(error, path)}"
        raise InvalidArgumentError(argument, f"{path} raised {raised}") from None
    finally:
        sys.path.pop(0)
    return module


def _own_frame(error: BaseException, path: Path) -> str:
    """Where the user's own file raised (its last frame), else the last frame of the error."""
    frames = traceback.extract_tb(error.__traceback__)
    own = [frame for frame in frames if Path(frame.filename).resolve() == path.resolve()]
    outside = [
        frame
        for frame in frames
        if "importlib" not in frame.filename and not frame.filename.startswith("<frozen")
    ]
    chosen = own or outside
    if not chosen:
        return ""
    last = chosen[-1]
    return f" (at {last.filename}, line {last.lineno}: {last.line or '?'})"


def _function(fn: object) -> object:
    """The function behind ``fn``: a ``functools.partial``'s, unwrapped from decorators."""
    target = getattr(fn, "func", fn)
    return inspect.unwrap(target) if callable(target) else target


def check(fn: object, *, argument: str = "workflow", label: str | None = None) -> None:
    """``fn`` is a workflow (a ``functools.partial`` or a decorated one included) that can be
    called as ``fn(session)`` or ``fn(session, input)``."""
    target = _function(fn)
    name = label if label is not None else getattr(fn, "__name__", type(fn).__name__)
    if not (inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)):
        raise InvalidArgumentError(argument, f"{name!r} is not {EXPECTED}")
    try:
        signature = inspect.signature(fn)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return  # no signature to read (a builtin wrapper): calling it will tell
    positional = [p for p in signature.parameters.values() if p.kind in _POSITIONAL]
    spread = any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values())
    required = [p for p in positional if p.default is p.empty]
    keyword_only = [
        p.name
        for p in signature.parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.default is p.empty
    ]
    if (not positional and not spread) or len(required) > 2 or keyword_only:
        raise InvalidArgumentError(
            argument,
            f"{name!r} takes {_described(signature)}; a workflow is called as fn(session) or "
            "fn(session, input)",
        )


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _described(signature: inspect.Signature) -> str:
    return f"the parameters {signature}" if signature.parameters else "no parameters"


def is_streaming(fn: Callable[..., Any]) -> bool:
    """Whether the workflow is an async generator (it runs as a streaming execution)."""
    return inspect.isasyncgenfunction(_function(fn))


def takes_input(fn: Callable[..., Any]) -> bool:
    """Whether the workflow has a parameter for the input besides the session."""
    parameters = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return True
    return len([p for p in parameters if p.kind in _POSITIONAL]) >= 2


def bind(
    fn: Callable[..., Any],
    value: Any,
    *,
    before: Callable[[Any], None] | None = None,
    shape: tuple[bool, bool] | None = None,
) -> Callable[[Any], Any]:
    """The workflow as an execution runs it: called with the input when it takes one, after
    ``before(session)`` (labels, metadata) if given; a generator stays a generator.
    ``shape`` is ``(takes_input(fn), is_streaming(fn))`` when the caller binds the same
    workflow many times and read them once."""
    takes, streams = (takes_input(fn), is_streaming(fn)) if shape is None else shape
    args = (value,) if takes else ()

    if streams:

        async def stream(session: SessionType) -> AsyncIterator[Event]:
            if before is not None:
                before(session)
            async with contextlib.aclosing(fn(session, *args)) as events:
                async for event in events:
                    yield event

        return _named(stream, fn)

    async def call(session: SessionType) -> Any:
        if before is not None:
            before(session)
        return await fn(session, *args)

    return _named(call, fn)


def _named(wrapper: Callable[[Any], Any], fn: Callable[..., Any]) -> Callable[[Any], Any]:
    """``wrapper`` under the workflow's own name, which summaries and traces show."""
    wrapper.__qualname__ = wrapper.__name__ = workflow_name(fn)
    return wrapper
