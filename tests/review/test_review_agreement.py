"""Fleiss' kappa and pairwise agreement against hand-computed examples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from review.agreement import fleiss_kappa, pairwise_agreement, votes_per_hour

# Wikipedia's worked example ("Fleiss' kappa"): 10 subjects, 14 raters, 5 categories; κ = 0.210.
WIKIPEDIA = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def test_fleiss_kappa_wikipedia_example() -> None:
    assert fleiss_kappa(WIKIPEDIA) == pytest.approx(0.2099, abs=5e-4)


def test_small_hand_computed_example() -> None:
    # Two subjects, three raters, two categories: [3,0] and [1,2].
    # P_1 = 1, P_2 = (1+4-3)/6 = 1/3, P̄ = 2/3; p = (4/6, 2/6), P_e = 5/9; κ = (2/3-5/9)/(4/9) = 1/4.
    assert fleiss_kappa([[3, 0], [1, 2]]) == pytest.approx(0.25)
    # pairs: subject 1 has 3 agreeing pairs of 3, subject 2 one of 3 → 4/6.
    assert pairwise_agreement([[3, 0], [1, 2]]) == pytest.approx(4 / 6)


def test_perfect_and_undefined() -> None:
    assert fleiss_kappa([[2, 0], [0, 2]]) == pytest.approx(1.0)
    assert fleiss_kappa([[2, 0], [2, 0]]) is None  # one category only: chance agreement is 1
    assert fleiss_kappa([]) is None
    assert pairwise_agreement([]) is None


def test_varying_number_of_raters() -> None:
    # A two-vote stop ([2,0]) next to a split that needed a third vote ([1,2]).
    kappa = fleiss_kappa([[2, 0], [1, 2]])
    # P_1 = 1, P_2 = 1/3, P̄ = 2/3; p = (3/5, 2/5), P_e = 13/25; κ = (2/3-13/25)/(12/25) = 11/36.
    assert kappa == pytest.approx(11 / 36)


def test_votes_per_hour_ignores_breaks() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    times = [t0 + timedelta(seconds=30 * i) for i in range(11)]  # 10 gaps of 30 s
    times.append(t0 + timedelta(hours=3))  # after a long break: counts 5 minutes
    assert votes_per_hour(times) == pytest.approx(11 / ((300 + 300) / 3600))
    assert votes_per_hour([t0]) is None
