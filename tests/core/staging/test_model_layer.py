"""The model layer: separate from expert labels, review order, agreement."""
from __future__ import annotations

import numpy as np
import pytest

from eegvlm_desktop.core.staging.model_layer import ModelLayer


def onehot(stages: str, conf: float = 0.9) -> np.ndarray:
    order = ["W", "N1", "N2", "N3", "R"]
    out = np.full((len(stages.split()), 5), (1 - conf) / 4)
    for i, s in enumerate(stages.split()):
        out[i, order.index(s)] = conf
    return out


def test_empty_layer_has_no_stages():
    layer = ModelLayer(4, "m")
    assert layer.n_done == 0 and list(layer.stages()) == ["", "", "", ""]
    assert layer.stage(0) is None and np.isnan(layer.confidence()).all()
    assert layer.agreement(["W", "W", "N2", "N2"]) is None


def test_set_proba_notifies_and_gives_stages():
    layer = ModelLayer(4)
    seen = []
    layer.subscribe(seen.append)
    layer.set_proba([1, 3], onehot("N2 R"))
    assert seen == [[1, 3]]
    assert list(layer.stages()) == ["", "N2", "", "R"]
    assert layer.done.tolist() == [False, True, False, True]
    with pytest.raises(ValueError, match="'proba'"):
        layer.set_proba([0], np.ones((2, 5)))
    with pytest.raises(IndexError):
        layer.set_proba([9], onehot("W"))
    layer.clear("other")
    assert layer.n_done == 0 and layer.model_name == "other"


def test_review_queue_puts_disagreements_then_uncertainty_first():
    layer = ModelLayer(5)
    p = np.vstack([onehot("W", 0.9), onehot("N2", 0.5), onehot("N2", 0.8), onehot("R", 0.6),
                   onehot("N3", 0.95)])
    layer.set_proba(range(5), p)
    expert = ["W", "N2", "N3", "R", "UNS"]
    assert layer.disagreements(expert).tolist() == [False, False, True, False, False]
    assert layer.review_queue(expert, "disagreement") == [2, 1, 3, 0, 4]
    assert layer.review_queue(expert, "uncertainty") == [1, 3, 2, 0, 4]
    assert "expert says N3" in layer.reason(2, "N3")
    with pytest.raises(ValueError, match="order"):
        layer.review_queue(expert, "random")


def test_agreement_uses_epochs_both_scored():
    layer = ModelLayer(4)
    layer.set_proba([0, 1, 2], onehot("W N2 N2"))
    m = layer.agreement(["W", "N2", "N3", "N2"])
    assert m["n_epochs"] == 3 and m["accuracy"] == pytest.approx(2 / 3)
    assert m["confusion"][3][2] == 1


def test_copy_is_a_snapshot_without_listeners():
    layer = ModelLayer(3, "m")
    layer.set_proba([0], onehot("N2"))
    seen = []
    layer.subscribe(seen.append)
    snap = layer.copy()
    layer.set_proba([1], onehot("W"))
    assert snap.n_done == 1 and snap.model_name == "m" and layer.n_done == 2
    snap.set_proba([2], onehot("R"))
    assert seen == [[1]]  # the copy does not notify the original's listeners


def test_night_context_changes_what_the_layer_answers_and_can_be_turned_off():
    from eegvlm_desktop.core.staging.sequence import StageSequenceModel

    layer = ModelLayer(9, "m")
    p = onehot("W W W W N1 W W W W", 0.9)
    p[4] = [0.4, 0.45, 0.05, 0.05, 0.05]  # an unsure lone N1 inside wake
    layer.set_proba(range(9), p)
    assert layer.stage(4) == "N1" and not layer.context_active
    seen = []
    layer.subscribe(seen.append)
    layer.set_sequence(StageSequenceModel.fit(["W"] * 50 + ["N1"] * 2 + ["N2"] * 30))
    assert layer.context_active and seen[-1] == list(range(9))  # every view redraws
    assert layer.stage(4) == "W" and layer.stages()[4] == "W"
    assert layer.epoch_proba[4].argmax() == 1  # the epoch's own answer is kept
    assert layer.disagreements(["W"] * 9).sum() == 0
    assert "alone N1 45%" in layer.reason(4, "W")
    np.testing.assert_allclose(layer.proba.sum(1), 1.0)
    with pytest.raises(ValueError):
        layer.proba[0, 0] = 1.0  # read-only
    snap = layer.copy()
    assert snap.context_active and snap.stage(4) == "W"
    layer.set_context(False)
    assert layer.stage(4) == "N1" and snap.stage(4) == "W"
    assert layer.confidence()[4] == pytest.approx(0.45)
    # With context on, new results notify every epoch (neighbours' answers move too).
    layer.set_context(True)
    layer.set_proba([0], onehot("W"))
    assert seen[-1] == list(range(9))
    with pytest.raises(TypeError, match="'sequence'"):
        layer.set_sequence("no")
