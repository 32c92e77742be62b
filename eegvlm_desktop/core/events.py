"""Change events for the core's data models (no Qt: views subscribe with plain callables)."""
from __future__ import annotations

from collections.abc import Callable

#: A listener receives the indices (epochs) that changed.
Listener = Callable[[list[int]], None]


class ChangeNotifier:
    """Mixin: ``subscribe`` / ``unsubscribe`` listeners, ``_notify(indices)`` after changes.

    Listeners are called in subscription order on the thread that made the change (the GUI
    thread, for everything the window shows).
    """

    def _init_listeners(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(indices)`` after every change."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _notify(self, indices: list[int]) -> None:
        for listener in list(self._listeners):
            listener(indices)
