"""Review write services: the stable import surface for other code.

The services live in modules named after what they hold:

- ``review.queue``: open items, hand out leases (seats), release them, let them run out;
- ``review.votes``: cast and revise votes, decide an item at two matching votes, apply the
  decision;
- ``review.corrections``: store the corrected images that come with HV3 votes.

Import from here (``from review.services import vote_cast``), not from those modules.
"""

from __future__ import annotations

from review.queue import (
    review_item_open,
    review_lease_release,
    review_leases_expire,
    review_queue_next,
)
from review.votes import VoteOutcome, VoteRefused, vote_cast, vote_revise

__all__ = [
    "VoteOutcome",
    "VoteRefused",
    "review_item_open",
    "review_lease_release",
    "review_leases_expire",
    "review_queue_next",
    "vote_cast",
    "vote_revise",
]
