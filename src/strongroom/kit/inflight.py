"""How many requests this process is serving right now (counted by the request envelope)."""

from __future__ import annotations


class InFlight:
    """A counter of requests in progress on one process's event loop (used from that loop)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def alone(self) -> bool:
        """Whether the caller's own request is the only one in progress."""
        return self.count <= 1
