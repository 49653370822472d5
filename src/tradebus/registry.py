"""Plugins found by entry point: one helper for the ``tradebus.sinks`` and ``tradebus.sources``
groups, the built-ins included (tradebus registers its own in its ``pyproject.toml``).

An entry point's name is the ``type`` a ``[[sinks]]`` / ``[[sources]]`` table gives, its object
a ``tradebus.plugin.SinkPlugin`` / ``SourcePlugin``. Two installed packages that claim one
``type`` are refused, naming both: which one a config meant cannot be guessed.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Generic, Protocol, TypeVar

from tradebus.errors import ConfigError

# The distribution whose entry points are the built-ins (listed first, in its own order).
OWN = "tradebus"


class Named(Protocol):
    @property
    def type(self) -> str: ...


P = TypeVar("P", bound=Named)


def _package(ep: EntryPoint) -> str:
    return ep.dist.name if ep.dist is not None else ep.value.partition(":")[0]


class Registry(Generic[P]):
    """The plugins of one entry-point group, loaded once, on first use."""

    def __init__(self, group: str, kind: type[P], order: tuple[str, ...] = ()) -> None:
        self.group = group
        self.kind = kind
        # The built-ins in the order messages and docs list them (installers sort by name).
        self.order = order
        self._plugins: dict[str, P] | None = None
        self._packages: dict[str, str] = {}

    def plugins(self) -> dict[str, P]:
        """Every ``type`` to its plugin: tradebus's own first, then the others by name.

        ``ConfigError`` when two packages claim one type, or an entry point is not a plugin.
        """
        if self._plugins is None:
            found = sorted(
                entry_points(group=self.group),
                key=lambda ep: (_package(ep) != OWN, self._rank(ep.name), ep.name),
            )
            plugins: dict[str, P] = {}
            packages: dict[str, str] = {}
            for ep in found:
                package = _package(ep)
                if ep.name in packages:
                    raise ConfigError(
                        [
                            f"{self.group}: type {ep.name!r} is claimed by two installed"
                            f" packages, {packages[ep.name]} and {package}: uninstall one"
                        ]
                    )
                try:
                    plugin = ep.load()
                except (ImportError, AttributeError, ValueError) as exc:
                    raise ConfigError(
                        [
                            f"{self.group}: entry point {ep.name!r} of {package} ({ep.value})"
                            f" cannot be loaded: {str(exc)[:200]}"
                        ]
                    ) from None
                if not isinstance(plugin, self.kind) or plugin.type != ep.name:
                    raise ConfigError(
                        [
                            f"{self.group}: entry point {ep.name!r} of {package} ({ep.value})"
                            f" is not a {self.kind.__name__} of type {ep.name!r}"
                        ]
                    )
                plugins[ep.name] = plugin
                packages[ep.name] = package
            self._plugins, self._packages = plugins, packages
        return self._plugins

    def _rank(self, name: str) -> int:
        return self.order.index(name) if name in self.order else len(self.order)

    def get(self, type_: str) -> P:
        """The plugin of ``type_``; ``KeyError`` when none is installed."""
        return self.plugins()[type_]

    def package(self, type_: str) -> str:
        """The distribution that provides ``type_``."""
        self.plugins()
        return self._packages[type_]

    def builtin(self, type_: str) -> bool:
        """Whether ``type_`` comes with tradebus itself."""
        return self.package(type_) == OWN
