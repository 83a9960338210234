"""A settle the backend refused for a reason other than an outage: store the batch's outcomes one by one.

Why: a worker's settle batch holds the outcomes of many unrelated tasks. When the backend refuses the batch for
good (a value it cannot store, a bug), failing the whole batch would stop the worker and re-run every task of it
after the restart — up to ``max_deliveries`` times, for one bad outcome. Settled apart, the others are stored; an
outcome refused even alone is stored as an ``error`` that says why (its result is dropped), so the task ends
instead of crash-looping the worker. An outage met meanwhile (or a refusal of that replacement too) is raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from qtasks_fast.faults import describe, transient
from qtasks_fast.log import get_logger
from qtasks_fast.worker.executor import NONE

if TYPE_CHECKING:
    from qtasks_fast.abc.broker import Broker, Outcome
    from qtasks_fast.abc.storage import Storage
    from qtasks_fast.schemas import Envelope

log = get_logger("worker")


async def settle_apart(broker: Broker, storage: Storage, outcomes: Sequence[Outcome], retries: Sequence[Envelope],
                       worker_id: str, refused: BaseException) -> None:
    """Settle ``outcomes`` (each with its retry child, if any) one by one after ``refused`` failed the batch."""
    children = {e.uuid: e for e in retries}
    log.warning("worker %s: the backend refused a batch of %d results (%s); storing them one by one", worker_id,
                len(outcomes), describe(refused))
    for o in outcomes:
        child = children.get(o[4])
        try:
            await broker.settle([o], storage, [child] if child is not None else [])
        except Exception as exc:
            if transient(exc):
                raise
            note = (f"the backend could not store this task's outcome ({describe(exc)}); its {o[1]} result was "
                    "dropped")
            log.warning("worker %s: task %s: %s", worker_id, o[0].envelope.uuid if o[0].envelope else "?", note)
            await broker.settle([(o[0], "error", NONE, note, "")], storage, [])
