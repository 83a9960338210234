"""How a task's parameters split into what callers send and what the worker fills in.

The wire signature is the function's minus the ``self`` of an ``echo=True`` task and the
``Depends``/``State`` parameters (:mod:`qtasks_fast.depends`); it is what producers bind and
validate against (msgspec, from the type hints), and what travels. Pydantic model parameters
(:mod:`qtasks_fast.contrib.pydantic`) are on the wire as dicts, so msgspec passes them through
and the model itself validates them. :func:`assemble` puts everything back in place for the call.

QTasks' "spread" form of a model parameter (its pydantic wrapper plugin) is folded back by :func:`fold_spread`
before binding, on both sides: ``save.add_task(id=1, items=["a"])`` or ``save.add_task(1, ["a"])`` for
``def save(order: Order)`` is ``save.add_task({"id": 1, "items": ["a"]})``.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, get_args, get_origin, get_type_hints

import msgspec

from qtasks_fast.contrib.pydantic import model_param
from qtasks_fast.depends import injection_of
from qtasks_fast.exceptions import TaskArgumentsError

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


def fold_spread(tf: TaskFunc, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[Sequence[Any], dict[str, Any]]:
    """QTasks' spread form of the task's first model parameter, folded into one dict argument.

    The rules of QTasks' ``PydanticWrapperPlugin``, made unambiguous: only the first model parameter is
    spread; it is spread when it is not passed itself (by name, or at its position as a model or a dict).
    Keyword arguments named after one of its fields (and not after a parameter) are its fields; positional
    arguments from its position on fill the fields not given by keyword, in field order, and what is left
    stays positional. QTasks maps positionals from the first one, even those of the parameters before the model;
    here those keep their parameters. A keyword that is neither a parameter nor a field is refused naming it.
    """
    name, mp = next(iter(tf.models.items()))
    params = list(tf._wire_sig.parameters.values())
    names = [p.name for p in params]
    if name in kwargs:
        return args, kwargs
    fields = list(mp.model.model_fields)
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        for key in kwargs:
            if key not in names and key not in fields:
                raise TaskArgumentsError(f"task {tf.name!r}: {key!r} is neither a parameter nor a field of "
                                         f"{mp.model.__name__} ({name}); its fields are {', '.join(fields)}")
    idx = names.index(name)
    positional = all(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params[:idx + 1])
    rest: list[Any] = []
    if positional and len(args) > idx:
        if isinstance(args[idx], (mp.model, dict)):
            return args, kwargs  # the model itself, or its dict
        rest = list(args[idx:])
        args = args[:idx]
    data = {k: v for k, v in kwargs.items() if k in fields and k not in names}
    if not data and not rest:
        return args, kwargs  # not passed at all: binding says it is missing
    kwargs = {k: v for k, v in kwargs.items() if k not in data}
    for f in fields:
        if not rest:
            break
        if f not in data:
            data[f] = rest.pop(0)
    if positional and len(args) == idx:
        return (*args, data, *rest), kwargs
    return args, {**kwargs, name: data}
