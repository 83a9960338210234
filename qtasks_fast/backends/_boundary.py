"""A backend's error boundary: its client library's exceptions leave its classes as ours.

The rule (:mod:`qtasks_fast.abc.broker`): the core sees ``BrokerUnavailable``/``BrokerFull`` for what time
fixes, ``BrokerRefused`` or ``BrokerError`` for what it does not, and never a client library's exception.
A backend states its mapping once, as a function, and decorates its broker and storage classes::

    at_boundary = boundary(lambda backend, exc: BrokerUnavailable(...) if is_outage(exc) else None)

    @at_boundary
    class MyBroker(Broker, Cancel): ...

Why wrap the contract's methods instead of each call site: one place per backend, and a method added
later (a new capability, the query side) is covered by declaring it, not by remembering a ``try``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from qtasks_fast.abc.broker import Broker
from qtasks_fast.abc.capabilities import ALL
from qtasks_fast.abc.query import TaskQueries
from qtasks_fast.abc.storage import Storage

T = TypeVar("T", bound=type)
#: ``(backend object, exception) -> our exception``, or None to let the exception through unchanged
Translate = Callable[[Any, BaseException], "BaseException | None"]
#: helpers the worker calls per batch that make no round trip: left unwrapped
_PURE = frozenset({"fused", "marks_started", "recover", "part_sizes"})
#: every method of the contract (core broker, storage, capabilities, query side) a backend class may implement
CONTRACT = frozenset(name for c in (Broker, Storage, TaskQueries, *ALL) for name, value in vars(c).items()
                     if callable(value) and not name.startswith("_")) - _PURE


def boundary(translate: Translate) -> Callable[[T], T]:
    """A class decorator wrapping each contract method of a class (its own and inherited, and those of its
    subclasses, through ``__init_subclass__``) so an exception ``translate`` maps leaves it mapped."""

    def decorate(cls: T) -> T:
        for name in CONTRACT:
            fn = getattr(cls, name, None)
            if fn is not None and not getattr(fn, "_at_boundary", False):
                setattr(cls, name, _translating(fn, translate))
        if not getattr(cls, "_boundary_hook", False):  # once, on the first class: its subclasses inherit it
            root: type = cls

            def init_subclass(sub: type, **kwargs: Any) -> None:
                super(root, sub).__init_subclass__(**kwargs)  # type: ignore[arg-type]
                decorate(sub)  # type: ignore[type-var]
            cls.__init_subclass__ = classmethod(init_subclass)  # type: ignore[assignment]
            cls._boundary_hook = True  # type: ignore[attr-defined]
        return cls

    return decorate


def _translating(fn: Callable[..., Any], translate: Translate) -> Callable[..., Any]:
    def mapped(self: Any, exc: Exception) -> BaseException:
        ours = translate(self, exc)
        return exc if ours is None else ours

    wrapper: Callable[..., Any]
    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        async def agen(self: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            try:
                async for item in fn(self, *args, **kwargs):
                    yield item
            except Exception as exc:
                ours = mapped(self, exc)
                if ours is exc:
                    raise
                raise ours from exc
        wrapper = agen
    elif inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def coro(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(self, *args, **kwargs)
            except Exception as exc:
                ours = mapped(self, exc)
                if ours is exc:
                    raise
                raise ours from exc
        wrapper = coro
    else:
        @functools.wraps(fn)
        def sync(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return fn(self, *args, **kwargs)
            except Exception as exc:
                ours = mapped(self, exc)
                if ours is exc:
                    raise
                raise ours from exc
        wrapper = sync
    wrapper.__dict__["_at_boundary"] = True
    return wrapper


__all__ = ["CONTRACT", "Translate", "boundary"]
