from collections import Counter

from eegvlm_desktop.gui.shortcuts import BY_ID, SHORTCUTS, STAGE_ACTIONS, help_rows


def test_every_key_is_bound_once():
    keys = Counter(k for s in SHORTCUTS for k in s.keys)
    assert [k for k, n in keys.items() if n > 1] == []


def test_both_scoring_conventions_are_bound():
    assert set(BY_ID["stage_W"].keys) >= {"W", "0"}
    assert set(BY_ID["stage_R"].keys) >= {"R", "4", "5"}
    assert BY_ID["stage_UNS"].keys[0] == "."
    assert STAGE_ACTIONS == {"stage_W": "W", "stage_N1": "N1", "stage_N2": "N2",
                             "stage_N3": "N3", "stage_R": "R", "stage_ART": "ART",
                             "stage_UNS": "UNS"}


def test_help_rows_come_from_the_table():
    assert len(help_rows()) == len(SHORTCUTS)
    assert ("Edit", "Ctrl+Z", "Undo the last label change") in help_rows()


def test_window_actions_match_table(window):
    assert set(window.actions) == {s.action_id for s in SHORTCUTS}
    for s in SHORTCUTS:
        got = [seq.toString() for seq in window.actions[s.action_id].shortcuts()]
        assert len(got) == len(s.keys)
