"""The one throttle/debounce helper: bursts become one call, cancel drops it."""
from __future__ import annotations

import pytest

from eegvlm_desktop.gui.throttle import Debounced, Throttled


def test_a_burst_of_throttled_calls_runs_once(qtbot):
    calls = []
    t = Throttled(lambda: calls.append(1), 20)
    for _ in range(5):
        t()
    assert t.pending
    qtbot.waitUntil(lambda: calls == [1], timeout=2000)
    assert not t.pending


def test_debounced_waits_for_the_calls_to_pause_and_cancel_drops_it(qtbot):
    calls = []
    d = Debounced(lambda: calls.append(1), 20)
    d()
    d()
    qtbot.waitUntil(lambda: calls == [1], timeout=2000)
    d()
    d.cancel()
    assert not d.pending
    qtbot.wait(60)  # longer than the interval: the cancelled call never runs
    assert calls == [1]


def test_a_bad_interval_is_refused_by_name(qtbot):
    with pytest.raises(ValueError, match="'ms' parameter"):
        Throttled(lambda: None, -1)
