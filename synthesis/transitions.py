"""Guarded status transitions with an audit row: the only way a status changes."""

from __future__ import annotations

from functools import cache
from typing import Any

from django.db import models, transaction

from synthesis.models import StatusChange
from synthesis.states import TRANSITIONS


class IllegalTransition(ValueError):
    pass


@cache
def _status_type(model: type[models.Model], field_name: str) -> type[models.TextChoices]:
    field = model._meta.get_field(field_name)
    choices = {value for value, _ in field.choices or ()}  # type: ignore[union-attr]
    for status_type in TRANSITIONS:
        if set(status_type.values) == choices:
            return status_type
    raise LookupError(f"{model.__name__}.{field_name} has no transition map")


@cache
def _has_field(model: type[models.Model], name: str) -> bool:
    return any(f.name == name for f in model._meta.concrete_fields)


def transition(
    model: type[models.Model],
    pk: int,
    *,
    old: str,
    new: str,
    reason: str = "",
    actor: str = "system",
    field: str = "status",
    **updates: Any,
) -> bool:
    """Move object ``pk`` from ``old`` to ``new`` if it is still in ``old``.

    Returns whether this call made the move: a racer that finds the object already moved does
    nothing and gets False. ``updates`` are written in the same UPDATE. Models with a ``reason``
    field keep the reason of their latest status change there (why it was discarded, …).
    """
    edges = TRANSITIONS[_status_type(model, field)]
    if new not in edges.get(old, frozenset()):
        raise IllegalTransition(f"{model.__name__} cannot go from '{old}' to '{new}'")
    if reason and "reason" not in updates and _has_field(model, "reason"):
        updates["reason"] = reason
    # No savepoint inside a caller's transaction: if the audit row failed, the caller's whole
    # transaction fails with it; alone, this is its own transaction.
    with transaction.atomic(savepoint=False):
        changed = model._default_manager.filter(pk=pk, **{field: old}).update(
            **{field: new}, **updates
        )
        if changed:
            StatusChange.objects.create(
                model=model.__name__.lower(),
                object_id=pk,
                old=old,
                new=new,
                reason=reason[:2000],
                actor=actor[:64],
            )
    return bool(changed)
