"""How a task's parameters split into what callers send and what the worker fills in.

The wire signature is the function's minus the ``self`` of an ``echo=True`` task and the
``Depends``/``State`` parameters (:mod:`qtasks_fast.depends`); it is what producers bind and
validate against (msgspec, from the type hints), and what travels. Pydantic model parameters
(:mod:`qtasks_fast.contrib.pydantic`) are on the wire as dicts, so msgspec passes them through
and the model itself validates them. :func:`assemble` puts everything back in place for the call.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, get_args, get_origin, get_type_hints

import msgspec

from qtasks_fast.contrib.pydantic import model_param
from qtasks_fast.depends import injection_of

if TYPE_CHECKING:
    from qtasks_fast.task import TaskFunc


def wire_signature(tf: TaskFunc) -> tuple[inspect.Signature, dict[str, Any]]:
    """The signature callers see and its validation types; fills ``tf.injected`` and ``tf.models``."""
    try:
        hints = get_type_hints(tf.func, include_extras=True)
    except Exception:  # unresolvable forward references: validate nothing rather than crash
        hints = {}
    params = list(tf._sig.parameters.values())[1 if tf.echo else 0:]
    wire, types = [], {}
    for p in params:
        ann = hints.get(p.name, Any)
        inj = injection_of(ann, p.default)
        if inj is not None:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"task {tf.name!r}: *{p.name} cannot be injected")
            tf.injected[p.name] = inj
            continue
        if get_origin(ann) is Annotated:
            ann = get_args(ann)[0]
        mp = model_param(ann)
        if mp is not None:
            tf.models[p.name] = mp
            ann = Any
        types[p.name] = ann
        wire.append(p)
    return tf._sig.replace(parameters=wire), types


def build_validator(name: str, wire_sig: inspect.Signature, types: dict[str, Any]) -> type[msgspec.Struct] | None:
    """A msgspec Struct mirroring the annotated wire parameters; None when nothing is annotated."""
    fields: list[tuple[str, Any, Any] | tuple[str, Any]] = []
    annotated = False
    for p in wire_sig.parameters.values():
        ann = types[p.name]
        annotated |= ann is not Any
        if p.kind is p.VAR_POSITIONAL:
            ann = tuple[ann, ...]  # type: ignore[valid-type]
        elif p.kind is p.VAR_KEYWORD:
            ann = dict[str, ann]  # type: ignore[valid-type]
        fields.append((p.name, ann, msgspec.NODEFAULT) if p.default is p.empty else (p.name, ann, p.default))
    if not annotated:
        return None
    # defstruct needs required fields first; order does not matter for validation by name
    fields.sort(key=lambda f: len(f) == 3 and f[2] is not msgspec.NODEFAULT)  # type: ignore[misc]
    return msgspec.defstruct(f"{name}_args", fields, kw_only=True)  # type: ignore[arg-type]


def assemble(tf: TaskFunc, values: dict[str, Any], injected: dict[str, Any], echo: Any,
             wire: bool) -> tuple[Sequence[Any], dict[str, Any]]:
    """``(args, kwargs)`` from values by parameter name: for the wire (``wire``), or for the call itself
    (with the ``injected`` values and the echo ``self``)."""
    params = list((tf._wire_sig if wire else tf._sig).parameters.values())
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    if tf.echo and not wire:
        args.append(echo)
        params = params[1:]
    skipped: list[Any] = []  # defaults of omitted positionals: passed only if a later positional is given
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            if p.name in values:
                args += skipped
                skipped = []
                args.extend(values[p.name])
        elif p.kind is p.VAR_KEYWORD:
            kwargs.update(values.get(p.name, {}))
        elif p.name in injected or p.name in values:
            v = injected[p.name] if p.name in injected else values[p.name]
            if p.kind is p.KEYWORD_ONLY:
                kwargs[p.name] = v
            else:
                args += skipped
                skipped = []
                args.append(v)
        elif p.kind is not p.KEYWORD_ONLY:
            skipped.append(p.default)
    return tuple(args), kwargs
