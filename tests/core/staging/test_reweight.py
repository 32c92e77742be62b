"""Re-weighting the three stagers: a lab where one stager fails learns to trust it less."""
from __future__ import annotations

import numpy as np
import pytest

from eegvlm_desktop.core.staging.adapt import (AdaptError, AdaptSettings, Head, HeadData,
                                               adapt_layer)
from eegvlm_desktop.core.staging.reweight import balanced_weights, fit_stagers

D = 8


def _log_softmax(z):
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def _parent() -> Head:
    # Trusts YASA most, as the shipped pool does (fitted on Sleep-EDF).
    return Head.from_parent({"vlm": 0.1, "rsn": 0.4, "yasa": 0.7}, 3 * np.eye(5, D),
                            np.zeros(5))


def _lab(rng, n, yasa_fails: bool) -> HeadData:
    """Epochs whose RobustSleepNet embedding points at the stage; YASA is confidently right,
    or (``yasa_fails``: another lab's montage) confidently wrong on 70 % of the epochs."""
    y = rng.integers(0, 5, n)
    seq = rng.normal(scale=0.7, size=(n, D))
    seq[np.arange(n), y] += 3.0
    said = y.copy()
    if yasa_fails:
        wrong = rng.random(n) < 0.7
        said[wrong] = (y[wrong] + rng.integers(1, 5, wrong.sum())) % 5
    yasa = _log_softmax(6.0 * np.eye(5)[said])
    return HeadData(np.log(np.full((n, 5), 0.2)), yasa, seq, y)


def _acc(head: Head, x: HeadData) -> float:
    return float((head.logits(x).argmax(1) == x.y).mean())


def test_a_failing_stager_loses_trust_and_no_stage_knowledge_changes():
    rng = np.random.default_rng(0)
    parent, new, test = _parent(), _lab(rng, 30, True), _lab(rng, 400, True)
    head = fit_stagers(parent, new, None, 0.01)
    assert head.a_yasa < 0.5 * parent.a_yasa
    assert _acc(head, test) > _acc(parent, test) + 0.2
    # RobustSleepNet's classifier is the parent's up to one scale, biases included.
    scale = head.layer[0, 0] / parent.layer[0, 0]
    assert scale > 0
    assert np.allclose(head.layer, scale * parent.layer)
    assert np.allclose(head.bias, scale * parent.bias)
    assert head.a_vlm >= 0 and head.a_yasa >= 0


def test_the_pull_and_rehearsal_hold_the_weights_near_the_parent():
    rng = np.random.default_rng(1)
    parent, new = _parent(), _lab(rng, 30, True)
    rehearsal = _lab(rng, 300, False)  # the parent's own lab, where YASA is right
    free = fit_stagers(parent, new, None, 0.01)
    pulled = fit_stagers(parent, new, None, 100.0)
    rehearsed = fit_stagers(parent, new, rehearsal, 0.01)
    assert abs(pulled.a_yasa - parent.a_yasa) < 0.05
    assert free.a_yasa < rehearsed.a_yasa  # the parent's lab still speaks for YASA


def test_balanced_weights_give_each_stage_the_same_total():
    y = np.array([2, 2, 2, 2, 2, 2, 1, 1, 0])
    w = balanced_weights(y)
    assert np.isclose(w.sum(), len(y))
    totals = [w[y == k].sum() for k in (0, 1, 2)]
    assert np.allclose(totals, totals[0])
    assert len(balanced_weights(np.zeros(0, dtype=int))) == 0


def test_the_guard_chooses_re_weighting_where_it_predicts_better():
    rng = np.random.default_rng(2)
    parent, new, test = _parent(), _lab(rng, 30, True), _lab(rng, 400, True)
    only_layer = AdaptSettings(stager_strengths=())
    head, report = adapt_layer(parent, new)
    assert report.chosen.startswith("stagers=")
    assert report.cv_log_loss[report.chosen] < report.cv_log_loss["parent"]
    assert _acc(head, test) > _acc(parent, test) + 0.2
    _, report = adapt_layer(parent, new, settings=only_layer)
    assert not any(k.startswith("stagers=") for k in report.cv_log_loss)


def test_the_parent_stays_where_every_stager_is_right():
    rng = np.random.default_rng(3)
    parent, new, test = _parent(), _lab(rng, 30, False), _lab(rng, 400, False)
    head, _ = adapt_layer(parent, new)
    assert _acc(head, test) >= _acc(parent, test) - 0.02


def test_bad_arguments_are_named():
    rng = np.random.default_rng(4)
    parent, new = _parent(), _lab(rng, 12, True)
    with pytest.raises(AdaptError, match="'lam'.*got 0"):
        fit_stagers(parent, new, None, 0)
    with pytest.raises(AdaptError, match="'sample_weight'"):
        fit_stagers(parent, new, None, 0.1, sample_weight=np.ones(3))
    with pytest.raises(AdaptError, match="'stager_strengths'.*got \\(-1.0,\\)"):
        AdaptSettings(stager_strengths=(-1.0,)).validate()
    assert AdaptSettings().to_dict()["stager_strengths"] == [0.1, 0.01]
    unlabeled = HeadData(new.vlm, new.yasa, new.seq)
    with pytest.raises(AdaptError, match="stages"):
        fit_stagers(parent, unlabeled, None, 0.1)


def test_variants_share_their_epochs_weight():
    rng = np.random.default_rng(5)
    parent, new = _parent(), _lab(rng, 20, True)
    # Every epoch twice with half the weight each is the same fit as every epoch once.
    twice = new.subset(np.repeat(np.arange(20), 2))
    once = fit_stagers(parent, new, None, 0.1)
    shared = fit_stagers(parent, twice, None, 0.1, sample_weight=np.full(40, 0.5))
    assert np.isclose(once.a_yasa, shared.a_yasa, atol=1e-4)
    assert np.isclose(once.a_vlm, shared.a_vlm, atol=1e-4)


def test_labels_of_one_stage_never_re_weight_the_stagers():
    rng = np.random.default_rng(6)
    one_stage = _lab(rng, 40, True)
    one_stage.y = np.full(40, 2)  # a stretch the expert scored all N2
    _, report = adapt_layer(_parent(), one_stage)
    assert report.cv_log_loss and not any(k.startswith("stagers=") for k in report.cv_log_loss)
