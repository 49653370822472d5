"""Plugins found by entry point: one helper for the ``tradebus.sinks`` and ``tradebus.sources``
groups, the built-ins included (tradebus registers its own in its ``pyproject.toml``).

An entry point's name is the ``type`` a ``[[sinks]]`` / ``[[sources]]`` table gives, its object
a ``tradebus.plugin.SinkPlugin`` / ``SourcePlugin``. Two installed packages that claim one
``type`` are refused, naming both: which one a config meant cannot be guessed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from tradebus.errors import ConfigError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

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
        self._refs: dict[str, str] = {}
        # Loaded by ``load`` alone, without looking at what else is installed.
        self._loaded: dict[str, P] = {}

    def plugins(self) -> dict[str, P]:
        """Every ``type`` to its plugin: tradebus's own first, then the others by name.

        ``ConfigError`` when two packages claim one type, or an entry point is not a plugin.
        """
        if self._plugins is None:
            # Imported here: a process that only ``load``s its plugins goes without it.
            from importlib.metadata import entry_points

            found = sorted(
                entry_points(group=self.group),
                key=lambda ep: (_package(ep) != OWN, self._rank(ep.name), ep.name),
            )
            plugins: dict[str, P] = {}
            packages: dict[str, str] = {}
            refs: dict[str, str] = {}
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
                plugins[ep.name] = self._checked(ep.name, plugin, f"{package} ({ep.value})")
                packages[ep.name] = package
                refs[ep.name] = ep.value
            self._plugins, self._packages, self._refs = plugins, packages, refs
        return self._plugins

    def _checked(self, type_: str, plugin: object, origin: str) -> P:
        if not isinstance(plugin, self.kind) or plugin.type != type_:
            raise ConfigError(
                [
                    f"{self.group}: entry point {type_!r} of {origin}"
                    f" is not a {self.kind.__name__} of type {type_!r}"
                ]
            )
        return plugin

    def ref(self, type_: str) -> str:
        """The object reference (``module:attr``) of ``type_``'s entry point, for ``load``."""
        self.plugins()
        return self._refs[type_]

    def load(self, type_: str, ref: str) -> P:
        """The plugin of ``type_`` at ``ref`` (its ``ref()`` in the daemon), imported alone:
        the delivery process imports the sinks it runs, not every installed plugin and what
        they import. ``get`` answers with it from then on."""
        plugin = self._loaded.get(type_)
        if plugin is None:
            module, _, attrs = ref.partition(":")
            found: object = importlib.import_module(module.strip())
            for attr in filter(None, attrs.strip().split(".")):
                found = getattr(found, attr)
            plugin = self._loaded[type_] = self._checked(type_, found, ref)
        return plugin

    def _rank(self, name: str) -> int:
        return self.order.index(name) if name in self.order else len(self.order)

    def get(self, type_: str) -> P:
        """The plugin of ``type_``; ``KeyError`` when none is installed."""
        if self._plugins is None and type_ in self._loaded:
            return self._loaded[type_]
        return self.plugins()[type_]

    def package(self, type_: str) -> str:
        """The distribution that provides ``type_``."""
        self.plugins()
        return self._packages[type_]

    def builtin(self, type_: str) -> bool:
        """Whether ``type_`` comes with tradebus itself."""
        return self.package(type_) == OWN
