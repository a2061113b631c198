"""kombu's Redis transport, with the one change that keeps a worker alive when Redis
restarts under it.

When a worker loses Redis a second time while it holds an unacknowledged message (a task
running, acks_late), Celery's clean-up closes the old connection's transport first and
its channel after; closing the channel restores the unacknowledged messages, which needs
a connection pool, which needs the connection's address, which is gone by then. kombu
raises ``AttributeError`` there, an error no clean-up path ignores, and the worker exits
("Unrecoverable error"), so the queues it consumed stay unread until someone restarts it.
Here that channel answers with a connection error instead, which every clean-up path
ignores: the worker reconnects. Nothing is lost by not restoring: the messages are
either still in Redis (its visibility timeout hands them out again) or went with a Redis
that lost its data, and the recovery sweep re-sends what that left unfinished.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu import transport
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection is None or self.connection.client is None:
            raise redis.exceptions.ConnectionError("the broker connection was closed")
        # Not in kombu's type hints, though every Redis channel has it.
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]
        return params


class Transport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    """Make ``redis://`` and ``rediss://`` broker URLs use this transport (kombu picks
    a transport by the URL's scheme; ``rediss`` keeps its TLS defaults, chosen by name)."""
    for scheme in ("redis", "rediss"):
        transport.TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
