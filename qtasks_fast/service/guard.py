"""Who calls the service and the one translation of backend failures into :mod:`~qtasks_fast.service.errors`.

Why here: the REST API, the pages and the gRPC gateway each catch only the service's typed errors; a broker
outage or a missing capability must reach all of them as the same :class:`Unavailable`, a bad uuid or cursor as
the same :class:`BadRequest`, never as a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import msgspec

from qtasks_fast.abc.capabilities import NotSupported
from qtasks_fast.exceptions import BrokerError, InvalidTaskId
from qtasks_fast.service.errors import BadRequest, NotFound, ReadOnly, ServiceError, Unavailable

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks


class Caller(msgspec.Struct, frozen=True, kw_only=True):
    """Who asks (written to the audit log) and whether the surface may change anything."""

    who: str
    read_only: bool = False

    def check_writable(self, action: str) -> None:
        """:class:`ReadOnly` for a mutation asked through a read-only surface."""
        if self.read_only:
            raise ReadOnly(f"{action} refused: this server is read-only (started with --read-only); use a server "
                           "started without it")


@contextmanager
def translated(field: str = "uuid") -> Iterator[None]:
    """Backend failures as service errors: a bad uuid → :class:`BadRequest` on ``field``; an unreachable broker
    or one lacking a capability → :class:`Unavailable` with its one-line reason."""
    try:
        yield
    except ServiceError:
        raise
    except InvalidTaskId as exc:
        raise BadRequest(field, str(exc)) from None
    except NotSupported as exc:
        raise Unavailable(str(exc)) from None
    except (BrokerError, ConnectionError, OSError, TimeoutError) as exc:
        from qtasks_fast.faults import describe

        raise Unavailable(f"the broker did not answer ({describe(exc)}); check that it is reachable") from None


async def known_queue(app: BaseQueueTasks, queue: str | None) -> str | None:
    """``queue`` when the app has it (None: every queue), else :class:`NotFound` naming the app's queues.

    Why every call that names a queue goes through it: a typo in a queue name must read "no such queue" the same
    way on every surface (REST 404, a page's 404, gRPC NOT_FOUND), not an empty list on one and 404 on another.
    """
    if queue is not None and queue not in await app.all_queues():
        raise NotFound(f"no queue {queue!r} in app {app.name!r}; its queues: {', '.join(app.queues)}")
    return queue


def checked_priority(app: BaseQueueTasks, priority: int | None, field: str = "priority") -> None:
    """A submitted priority outside the app's levels is a :class:`BadRequest` naming ``field``.

    Why here and not in ``add_task``: Python callers porting from QTasks may pass any int (``add_task`` maps one
    past an end onto that end, with a warning, as QTasks accepts them); a REST or gRPC client sends a number it
    chose from our documented 0..levels-1 range, so one outside it is a mistake it must hear about, not a silent
    remap."""
    levels = app.config.priority_levels
    if priority is not None and (type(priority) is not int or not 0 <= priority < levels):
        raise BadRequest(field, f"{field}: {priority!r} is outside 0..{levels - 1} (lower runs first)")
