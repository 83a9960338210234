"""Contract: the optional capabilities (delays, unique keys, cancel, purge, dead letters, limits, claims,
worker registry, queue statistics): each works, or raises ``NotSupported`` naming backend and capability."""

from __future__ import annotations

from qtasks_fast.testing.contract.harness import ContractBase


class ControlContract(ContractBase):
    """Optional capabilities (filled in by issue 12's contract work)."""
