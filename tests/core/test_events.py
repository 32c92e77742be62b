"""Named events: connection order, weak references to bound methods, disconnect."""
from __future__ import annotations

import gc

import pytest

from eegvlm_desktop.core.events import Event


class Listener:
    def __init__(self) -> None:
        self.seen: list = []

    def on(self, *args) -> None:
        self.seen.append(args)


def test_listeners_run_in_connection_order_with_the_emitted_arguments():
    ev, calls = Event("changed"), []
    ev.connect(lambda x: calls.append(("a", x)))
    ev.connect(lambda x: calls.append(("b", x)))
    ev.emit([3])
    assert calls == [("a", [3]), ("b", [3])]


def test_a_bound_method_is_held_weakly():
    ev, listener = Event("changed"), Listener()
    ev.connect(listener.on)
    ev.emit(1)
    assert listener.seen == [(1,)] and ev.n_listeners == 1
    del listener
    gc.collect()
    ev.emit(2)  # the listener's owner is gone: nothing is called, nothing is kept
    assert ev.n_listeners == 0


def test_connect_twice_calls_once_and_disconnect_stops_calls():
    ev, listener = Event("moved"), Listener()
    ev.connect(listener.on)
    ev.connect(listener.on)
    ev.emit(5)
    ev.disconnect(listener.on)
    ev.disconnect(listener.on)  # not connected any more: ignored
    ev.emit(6)
    assert listener.seen == [(5,)]


def test_a_non_callable_listener_is_refused_by_name():
    with pytest.raises(TypeError, match="'callback' parameter of event 'changed'"):
        Event("changed").connect(42)
