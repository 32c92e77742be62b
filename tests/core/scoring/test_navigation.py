"""The navigation state: clamping, pages, auto-advance, wrap-around search, its event."""
from __future__ import annotations

import pytest

from eegvlm_desktop.core.scoring.navigation import Navigation


@pytest.fixture
def nav() -> Navigation:
    n = Navigation(30.0)
    n.reset(10)
    return n


def test_go_to_clamps_and_announces(nav):
    seen = []
    nav.moved.connect(seen.append)
    nav.go_to(99)
    nav.go_to(-5)
    assert seen == [9, 0] and nav.epoch == 0


def test_nothing_moves_without_a_night():
    nav, seen = Navigation(), []
    nav.moved.connect(seen.append)
    nav.go_to(3)
    assert seen == [] and nav.epoch == 0


def test_pages_follow_the_window_length(nav):
    nav.set_window(120)
    assert nav.epochs_per_page == 4
    nav.go_to(9)
    assert nav.page_start == 8 and nav.page_epochs() == [8, 9]  # the last page is short
    nav.step_page(-1)
    assert nav.epoch == 5 and nav.page_start == 4


def test_auto_advance_stops_at_the_last_epoch_and_can_be_off(nav):
    nav.go_to(8)
    nav.advance()
    nav.advance()
    assert nav.epoch == 9
    nav.auto_advance = False
    nav.go_to(2)
    nav.advance()
    assert nav.epoch == 2


def test_next_where_wraps_round_the_night_and_says_none(nav):
    nav.go_to(7)
    mask = [i in (2, 7) for i in range(10)]
    assert nav.next_where(mask) == 2
    assert nav.next_where([False] * 10) is None
    assert nav.next_where([i == 7 for i in range(10)]) == 7  # the current epoch comes last


@pytest.mark.parametrize("bad", [0, -30, float("nan"), "30", True])
def test_bad_window_lengths_are_refused_by_name(nav, bad):
    with pytest.raises(ValueError, match="'seconds' parameter"):
        nav.set_window(bad)


def test_bad_epoch_length_and_count_are_refused_by_name():
    with pytest.raises(ValueError, match="'epoch_length' parameter"):
        Navigation(0)
    with pytest.raises(ValueError, match="'n_epochs' parameter"):
        Navigation().reset(-1)
