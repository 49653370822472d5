"""What the ops endpoint and the status page read of a running daemon, and all they may.

They take a ``DaemonView`` rather than the ``Daemon`` itself, so that the daemon imports the
ops endpoint (when ``[daemon] http`` is set) and not the other way round.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from tradebus.adapters.base import SourceContext
    from tradebus.bus import Bus
    from tradebus.config import Config
    from tradebus.delivery.links import DeliveryLink
    from tradebus.reload import Outcome, Reloads


class DaemonView(Protocol):
    """A running daemon as its ops endpoint sees it (read-only, but for a reload)."""

    @property
    def config(self) -> Config: ...

    @property
    def bus(self) -> Bus: ...

    @property
    def link(self) -> DeliveryLink: ...

    @property
    def contexts(self) -> Mapping[str, SourceContext]: ...

    @property
    def required(self) -> Mapping[str, bool]: ...

    @property
    def max_lag(self) -> Mapping[str, float]: ...

    @property
    def reloads(self) -> Reloads: ...

    def state(self) -> dict[str, Any]:
        """Per-source and per-sink state, and whether the daemon is ready (``/readyz``)."""
        ...

    def lag(self, cursor: int, now: float) -> float:
        """Seconds since the oldest event not acknowledged at ``cursor`` was journaled."""
        ...

    def on_append(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` after every journal append; the function returned unsubscribes."""
        ...

    async def reload(self, *, dry_run: bool = False) -> Outcome:
        """Re-read the config file and apply what changed (``dry_run``: plan it alone)."""
        ...
