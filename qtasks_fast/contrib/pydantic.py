"""Pydantic models as task arguments (extra ``qtasks-fast[pydantic]``).

    class Order(BaseModel):
        id: int
        items: list[str]

    @app.task
    def ship(order: Order) -> None: ...

    ship.add_task(Order(id=1, items=["a"]))   # or a dict: ship.add_task({"id": 1, "items": ["a"]})
    ship.add_task(id=1, items=["a"])          # or QTasks' spread form (fields as keywords, or positionals)

A parameter annotated with a ``BaseModel`` subclass travels as a plain dict
(``model_dump(mode="json")``: msgpack never carries a Python object). The
producer validates it when it knows the task (a bad value fails at
``add_task``), and the worker builds the model again (``model_validate``), so the
function always receives an instance. The spread form is folded into the dict first, on both sides
(:func:`qtasks_fast.middlewares.arguments.fold_spread`). A task may return a model (or a list or dict of them): the
worker stores ``model_dump(mode="json")``, as QTasks' pydantic wrapper plugin does. Nothing here imports
pydantic unless the app's code did: a task can only be annotated with a model once pydantic is loaded.
"""

from __future__ import annotations

import sys
import types
import typing
from typing import Any

import msgspec

from qtasks_fast.exceptions import TaskArgumentsError
from qtasks_fast.schemas.bigint import widen


class ModelParam:
    """A parameter annotated ``Model`` (or ``Model | None``: ``optional``)."""

    __slots__ = ("model", "optional")

    def __init__(self, model: Any, optional: bool) -> None:
        self.model = model
        self.optional = optional


def model_param(annotation: Any) -> ModelParam | None:
    """The model of an annotation ``Model`` or ``Model | None``, else None (pydantic is never imported here)."""
    pyd = sys.modules.get("pydantic")
    if pyd is None:
        return None
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation, optional = args[0], True
    if isinstance(annotation, type) and issubclass(annotation, pyd.BaseModel):
        return ModelParam(annotation, optional)
    return None


def _validate(task_name: str, param: str, mp: ModelParam, value: Any) -> Any:
    pyd = sys.modules["pydantic"]
    model = mp.model
    if isinstance(value, model) or (value is None and mp.optional):
        return value
    try:
        return model.model_validate(value)
    except pyd.ValidationError as exc:  # one line naming each bad field (pydantic's own text spans lines)
        bad = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(the value)'}: {e['msg']}" for e in exc.errors())
        raise TaskArgumentsError(f"task {task_name!r}: invalid argument {param!r} ({model.__name__}): "
                                 f"{bad}") from None


def to_wire(task_name: str, param: str, mp: ModelParam, value: Any) -> Any:
    """Producer side: a model instance or a dict, validated, as a msgpack-friendly dict."""
    value = _validate(task_name, param, mp, value)
    return None if value is None else value.model_dump(mode="json")


def to_model(task_name: str, param: str, mp: ModelParam, value: Any) -> Any:
    """Worker side: the dict from the wire as a model instance."""
    return _validate(task_name, param, mp, value)


def _dump(obj: Any) -> Any:
    """``enc_hook``: a pydantic model as its JSON-mode dict; anything else stays unsupported."""
    pyd = sys.modules.get("pydantic")
    if pyd is not None and isinstance(obj, pyd.BaseModel):
        return obj.model_dump(mode="json")
    raise TypeError(f"Encoding objects of type {type(obj).__name__} is unsupported")


#: the worker's second try at a result its plain encoder refused (the fast path never pays for models)
_encode_models = msgspec.msgpack.Encoder(enc_hook=_dump).encode


def encode_with_models(value: Any) -> bytes:
    """msgpack bytes of a result the plain encoder refused: pydantic models as ``model_dump(mode="json")``, ints
    wider than 64 bits as :mod:`qtasks_fast.schemas.bigint` extensions (raises TypeError/EncodeError/OverflowError
    for what still cannot be stored)."""
    try:
        return _encode_models(value)
    except OverflowError:
        return _encode_models(widen(value))
