"""Guarded status transitions with an audit row: the only way a status changes."""

from __future__ import annotations

from functools import cache
from typing import Any, cast

from django.db import connections, models, transaction
from django.db.models.sql import UpdateQuery
from django.utils import timezone

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
    audit = {
        "model": model.__name__.lower(),
        "object_id": pk,
        "old": old,
        "new": new,
        "reason": reason[:2000],
        "actor": actor[:64],
    }
    guarded = model._default_manager.filter(pk=pk, **{field: old})
    if connections[guarded.db].vendor == "postgresql":
        return _move_and_audit_in_one_statement(guarded, {field: new, **updates}, audit)
    # No savepoint inside a caller's transaction: if the audit row failed, the caller's whole
    # transaction fails with it; alone, this is its own transaction.
    with transaction.atomic(savepoint=False):
        changed = guarded.update(**{field: new}, **updates)
        if changed:
            StatusChange.objects.create(**audit)
    return bool(changed)


def _move_and_audit_in_one_statement(
    guarded: models.QuerySet[Any], values: dict[str, Any], audit: dict[str, Any]
) -> bool:
    """The guarded UPDATE and its audit row as one PostgreSQL statement (a data-modifying CTE):
    one round trip and no transaction of its own, instead of BEGIN, UPDATE, INSERT, COMMIT on
    the hot path of every pipeline step. The UPDATE is the one ``QuerySet.update`` would send."""
    query = cast(UpdateQuery, guarded.query.chain(UpdateQuery))
    query.add_update_values(values)
    compiler = query.get_compiler(guarded.db)
    compiler.pre_sql_setup()
    update_sql, update_params = compiler.as_sql()
    connection = connections[guarded.db]
    quote = connection.ops.quote_name
    table = quote(StatusChange._meta.db_table)
    columns = [*audit, "at"]
    sql = (
        f"WITH moved AS ({update_sql} RETURNING 1) "
        f"INSERT INTO {table} ({', '.join(quote(c) for c in columns)}) "
        f"SELECT {', '.join(['%s'] * len(columns))} FROM moved"
    )
    with transaction.mark_for_rollback_on_error(guarded.db), connection.cursor() as cursor:
        cursor.execute(sql, [*update_params, *audit.values(), timezone.now()])
        return cursor.rowcount == 1
