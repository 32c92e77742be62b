"""Named events for the core's data models (no Qt: listeners are plain callables).

A model holds one :class:`Event` attribute per thing that can happen to it (``changed`` for
the Hypnogram and the ModelLayer, ``moved`` for the navigation state); a view subscribes
itself::

    hypnogram.changed.connect(self.redraw)

Bound methods are held by weak reference (as napari's ``EmitterGroup`` does), so a model never
keeps a closed view alive and never calls one that is gone: no view needs to unsubscribe on
close, and no listener needs a guard against a deleted widget. Plain functions and lambdas are
held strongly (a weak reference to a lambda would die at once).
"""
from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any


class Event:
    """One named event: ``connect`` listeners, ``emit(*args)`` calls them in connection order.

    Listeners run on the thread that emits (the GUI thread, for everything the window shows).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._refs: list[Callable[[], Callable[..., Any] | None]] = []

    def connect(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        """Call ``callback(*args)`` on every emit; returns it (usable as a decorator)."""
        if not callable(callback):
            raise TypeError(f"Invalid value for the 'callback' parameter of event {self.name!r}: "
                            f"it must be callable, but got {callback!r}.")
        if self._find(callback) is None:
            if hasattr(callback, "__self__") and hasattr(callback, "__func__"):
                self._refs.append(weakref.WeakMethod(callback))
            else:
                self._refs.append(lambda cb=callback: cb)
        return callback

    def disconnect(self, callback: Callable[..., Any]) -> None:
        """Stop calling ``callback``; a callback that is not connected is ignored."""
        i = self._find(callback)
        if i is not None:
            del self._refs[i]

    def emit(self, *args: Any) -> None:
        alive = []
        for ref in list(self._refs):
            cb = ref()
            if cb is None:
                continue  # the listener's owner was collected: drop it
            alive.append(ref)
            cb(*args)
        if len(alive) != len(self._refs):
            self._refs = [r for r in self._refs if r() is not None]

    @property
    def n_listeners(self) -> int:
        """How many listeners are alive (for tests and debugging)."""
        return sum(r() is not None for r in self._refs)

    def _find(self, callback: Callable[..., Any]) -> int | None:
        for i, ref in enumerate(self._refs):
            if ref() == callback:
                return i
        return None


class ChangeNotifier:
    """Mixin for models whose one event is ``changed(indices)``: the epochs that changed.

    ``subscribe`` / ``unsubscribe`` are ``changed.connect`` / ``changed.disconnect``.
    """

    def _init_listeners(self) -> None:
        self.changed = Event("changed")

    def subscribe(self, listener: Callable[[list[int]], None]) -> None:
        """Call ``listener(indices)`` after every change (bound methods held weakly)."""
        self.changed.connect(listener)

    def unsubscribe(self, listener: Callable[[list[int]], None]) -> None:
        self.changed.disconnect(listener)

    def _notify(self, indices: list[int]) -> None:
        self.changed.emit(indices)
