"""Status transitions: only allowed edges, one winner per race, an audit row for each move."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from synthesis.models import Batch, Character, StatusChange
from synthesis.states import TRANSITIONS, BatchKind, CharacterStatus, terminal_states
from synthesis.transitions import IllegalTransition, transition


def _character(**fields: object) -> Character:
    batch = Batch.objects.create(kind=BatchKind.CHARACTERS, requested=1)
    return Character.objects.create(
        batch=batch,
        index=0,
        cid=f"C{batch.pk}-00000",
        subject_category="mammal",
        subject_type="red fox",
        profession_category="daily_services",
        profession="baker",
        **fields,
    )


@pytest.mark.django_db
def test_an_illegal_transition_is_refused_and_changes_nothing() -> None:
    character = _character()
    with pytest.raises(IllegalTransition, match=r"drafting.*locked"):
        transition(
            Character, character.pk, old=CharacterStatus.DRAFTING, new=CharacterStatus.LOCKED
        )
    character.refresh_from_db()
    assert character.status == CharacterStatus.DRAFTING
    assert not StatusChange.objects.exists()


@pytest.mark.django_db
def test_a_transition_from_a_state_the_object_left_does_nothing() -> None:
    character = _character(status=CharacterStatus.RENDERING)
    moved = transition(
        Character, character.pk, old=CharacterStatus.DRAFTING, new=CharacterStatus.RENDERING
    )
    assert moved is False
    assert not StatusChange.objects.exists()


@pytest.mark.django_db
def test_a_transition_writes_its_fields_and_an_audit_row() -> None:
    character = _character(status=CharacterStatus.PENDING_HV1)
    assert transition(
        Character,
        character.pk,
        old=CharacterStatus.PENDING_HV1,
        new=CharacterStatus.LOCKED,
        reason="two approvals",
        actor="hv1",
        judge_model="sim:gpt-4o",
    )
    character.refresh_from_db()
    assert (character.status, character.judge_model) == ("locked", "sim:gpt-4o")
    change = StatusChange.objects.get()
    assert (change.model, change.object_id, change.old, change.new, change.actor) == (
        "character",
        character.pk,
        "pending_hv1",
        "locked",
        "hv1",
    )


@pytest.mark.django_db
def test_a_transition_writes_expressions_and_json_in_its_update() -> None:
    # On PostgreSQL the UPDATE and the audit row are one statement built from the ORM's UPDATE;
    # it must keep what the ORM writes: an expression on the row, a JSON value.
    character = _character(status=CharacterStatus.DRAFTING)
    assert transition(
        Character,
        character.pk,
        old=CharacterStatus.DRAFTING,
        new=CharacterStatus.RENDERING,
        index=F("index") + 5,
        palette=[{"name": "rust", "hex": "#b7410e"}],
    )
    character.refresh_from_db()
    assert (character.status, character.index) == ("rendering", 5)
    assert character.palette == [{"name": "rust", "hex": "#b7410e"}]
    assert StatusChange.objects.get().new == "rendering"


@pytest.mark.django_db(transaction=True)
def test_a_transition_in_a_transaction_that_rolls_back_leaves_no_trace() -> None:
    character = _character(status=CharacterStatus.PENDING_HV1)
    with pytest.raises(RuntimeError), transaction.atomic():
        assert transition(
            Character, character.pk, old=CharacterStatus.PENDING_HV1, new=CharacterStatus.LOCKED
        )
        raise RuntimeError("the caller fails after the move")
    character.refresh_from_db()
    assert character.status == CharacterStatus.PENDING_HV1
    assert not StatusChange.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_on_postgresql_a_transition_and_its_audit_row_are_one_statement() -> None:
    # Outside any transaction: one round trip, where the ORM would send BEGIN, UPDATE, INSERT
    # and COMMIT (the hot path of every pipeline step).
    character = _character(status=CharacterStatus.PENDING_HV1)
    assert connection.get_autocommit()
    with CaptureQueriesContext(connection) as captured:
        assert transition(
            Character, character.pk, old=CharacterStatus.PENDING_HV1, new=CharacterStatus.LOCKED
        )
    assert len(captured) == 1, [q["sql"] for q in captured]
    assert StatusChange.objects.get().new == "locked"


def test_terminal_states_have_no_way_out() -> None:
    assert terminal_states(CharacterStatus) == {
        "discarded",
        "locked",
        "rejected",
        "failed",
        "cancelled",
    }
    for status_type, edges in TRANSITIONS.items():
        for old, targets in edges.items():
            assert old in status_type.values
            assert targets <= set(status_type.values)


@pytest.mark.django_db(transaction=True)
def test_two_racers_on_one_transition_exactly_one_wins() -> None:
    """Each racer has its own database connection and transaction (real concurrency)."""
    rounds = 20
    characters = [_character() for _ in range(rounds)]
    for c in characters:
        Character.objects.filter(pk=c.pk).update(status=CharacterStatus.PENDING_HV1)
    results: dict[tuple[int, str], bool] = {}
    barrier = threading.Barrier(2)

    def racer(target: str) -> None:
        try:
            for c in characters:
                barrier.wait(timeout=10)
                results[(c.pk, target)] = transition(
                    Character, c.pk, old=CharacterStatus.PENDING_HV1, new=target
                )
        finally:
            connection.close()

    threads = [
        threading.Thread(target=racer, args=(CharacterStatus.LOCKED,)),
        threading.Thread(target=racer, args=(CharacterStatus.REJECTED,)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in characters:
        wins = [results[(c.pk, "locked")], results[(c.pk, "rejected")]]
        assert wins.count(True) == 1, wins
        c.refresh_from_db()
        assert c.status == ("locked" if wins[0] else "rejected")
        assert StatusChange.objects.filter(object_id=c.pk, model="character").count() == 1
