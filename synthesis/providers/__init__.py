"""Model providers behind role-based interfaces.

The pipeline asks for a *role* (``planner``, ``judge``, …); ``routing`` maps the role to weighted
``provider:model`` entries; ``calls`` makes the call with retries, limits and a ledger row.
"""
