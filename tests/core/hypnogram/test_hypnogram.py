import json

import numpy as np
import pytest

from eegvlm_desktop.core.hypnogram.hypnogram import Change, Hypnogram


def test_set_stage_records_change_and_provenance():
    h = Hypnogram.unscored(5)
    seen = []
    h.subscribe(seen.append)
    c = h.set_stage(2, "N2")
    assert c == Change(2, "UNS", "N2", "expert", "none")
    assert h[2] == "N2" and h.provenance[2] == "expert"
    assert seen == [[2]]
    # same label again from the same source is no change and emits nothing
    assert h.set_stage(2, "N2") is None
    assert seen == [[2]]


def test_reject_bad_stage_names_parameter():
    h = Hypnogram.unscored(3)
    with pytest.raises(ValueError, match="'stage' parameter.*got 'S4'"):
        h.set_stage(0, "S4")
    with pytest.raises(ValueError, match="'stages'"):
        Hypnogram(["W", "4"])
    with pytest.raises(IndexError):
        h.set_stage(3, "W")


def test_apply_changes_reverse_restores_labels_and_provenance():
    h = Hypnogram(["W", "N1", "UNS"])
    changes = h.set_stages([0, 1, 2], "N3", source="expert")
    assert list(h.stages) == ["N3"] * 3
    h.apply_changes(changes, reverse=True)
    assert list(h.stages) == ["W", "N1", "UNS"]
    assert list(h.provenance) == ["import", "import", "none"]
    h.apply_changes(changes)
    assert list(h.stages) == ["N3"] * 3


def test_proba_kept_when_expert_relabels_and_json_round_trip():
    p = np.full((3, 5), np.nan)
    p[1] = [0.1, 0.2, 0.5, 0.1, 0.1]
    h = Hypnogram(["W", "N2", "R"], proba=p, provenance=["model"] * 3, scorer="m")
    h.set_stage(1, "N3")
    assert h.proba[1, 2] == pytest.approx(0.5)
    h2 = Hypnogram.from_dict(json.loads(json.dumps(h.to_dict())))
    assert h2 == h
    assert h2.scorer == "m"


def test_events_and_yasa_codes():
    h = Hypnogram(["W", "W", "N1", "UNS", "R"], start=60)
    assert h.events() == [(60, 60, "W"), (120, 30, "N1"), (150, 30, "UNS"), (180, 30, "R")]
    assert list(h.to_yasa_int()) == [0, 0, 1, -2, 4]
    assert h.epoch_at(125) == 2 and h.epoch_at(-5) == 0 and h.epoch_at(1e9) == 4


def test_views_are_read_only():
    h = Hypnogram(["W"])
    with pytest.raises(ValueError):
        h.stages[0] = "R"
