"""Night context: transition counting and forward-backward decoding (core/staging/sequence.py)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from eegvlm_desktop.core.stages import STAGES
from eegvlm_desktop.core.staging.sequence import (StageSequenceModel, fit_temperature, temper,
                                                  transition_counts)

W, N1, N2, N3, R = range(5)


def test_counts_skip_gaps_between_epoch_numbers():
    c = transition_counts(["W", "W", "N1", "N2", "N2"], epochs=[0, 1, 2, 10, 11])
    assert c[W, W] == 1 and c[W, N1] == 1 and c[N2, N2] == 1
    assert c[N1, N2] == 0  # epochs 2 -> 10 are not neighbours
    assert c.sum() == 3
    with pytest.raises(ValueError, match="'stages'.*'X'"):
        transition_counts(["W", "X"])
    with pytest.raises(ValueError, match="'epochs'"):
        transition_counts(["W", "N1"], epochs=[0])


def test_fit_rows_stochastic_prior_follows_balancing():
    stages = ["W"] * 16 + ["N2"] * 4
    bal = StageSequenceModel.fit(stages, balanced=True)
    raw = StageSequenceModel.fit(stages, balanced=False)
    np.testing.assert_allclose(bal.transitions.sum(1), 1.0)
    assert bal.n_transitions == 19
    assert bal.transitions[W, W] == pytest.approx((15 + 1) / (16 + 5))  # pseudo-count 1
    assert bal.prior[W] / bal.prior[N2] == pytest.approx(2.0)  # sqrt(16) / sqrt(4)
    assert raw.prior[W] / raw.prior[N2] == pytest.approx(4.0)
    # Several nights: the seam between them is not a transition.
    two = StageSequenceModel.fit_many([(["W", "W"], None), (["N2", "N2"], None)])
    assert two.n_transitions == 2


def test_smooth_equals_brute_force_posterior():
    rng = np.random.default_rng(3)
    seq = StageSequenceModel.fit(list(rng.choice(STAGES, 60)), balanced=False)
    p = rng.dirichlet(np.ones(5), size=4)
    like = p / seq.prior
    post = np.zeros((4, 5))
    for path in itertools.product(range(5), repeat=4):
        w = np.prod([like[t, s] for t, s in enumerate(path)])
        w *= np.prod([seq.transitions[a, b] for a, b in zip(path[:-1], path[1:])])
        for t, s in enumerate(path):
            post[t, s] += w
    post /= post.sum(1, keepdims=True)
    np.testing.assert_allclose(seq.smooth(p), post, atol=1e-6)


def test_context_flips_a_weak_lone_epoch_but_not_strong_evidence():
    seq = StageSequenceModel.fit(["W"] * 60 + ["N1"] * 3 + ["N2"] * 60)
    p = np.tile([0.9, 0.04, 0.02, 0.02, 0.02], (21, 1))
    p[10] = [0.35, 0.45, 0.1, 0.05, 0.05]  # a lone, unsure N1 inside long wake
    out = seq.smooth(p)
    assert STAGES[p[10].argmax()] == "N1" and STAGES[out[10].argmax()] == "W"
    p[10] = [0.001, 0.996, 0.001, 0.001, 0.001]  # the image is unambiguous
    assert STAGES[seq.smooth(p)[10].argmax()] == "N1"
    np.testing.assert_allclose(out.sum(1), 1.0)


def test_unstaged_rows_stay_nan_and_gaps_weaken_context():
    seq = StageSequenceModel.fit(["N3"] * 40 + ["R"] * 40)
    p = np.tile([0.02, 0.02, 0.02, 0.9, 0.04], (5, 1))
    p[2] = np.nan
    p[3] = [0.02, 0.02, 0.02, 0.47, 0.47]
    out = seq.smooth(p)
    assert np.isnan(out[2]).all() and np.isfinite(np.delete(out, 2, 0)).all()
    near = seq.smooth(p[[1, 3]], epochs=[0, 1])[1, N3]
    far = seq.smooth(p[[1, 3]], epochs=[0, 400])[1, N3]
    assert near > far  # an N3 epoch 200 minutes earlier says little about this one
    assert seq.smooth(np.empty((0, 5))).shape == (0, 5)
    with pytest.raises(ValueError, match="'proba'"):
        seq.smooth(np.ones((3, 4)))
    with pytest.raises(ValueError, match="'epochs'"):
        seq.smooth(p, epochs=[0, 1, 1, 2, 3])


def test_dict_round_trip_and_refusals():
    seq = StageSequenceModel.fit(["W", "N1", "N2", "N2", "N3", "R"], source="test night")
    back = StageSequenceModel.from_dict(seq.to_dict())
    np.testing.assert_allclose(back.transitions, seq.transitions, atol=1e-6)
    np.testing.assert_allclose(back.prior, seq.prior, atol=1e-6)
    assert back.source == "test night" and back.n_transitions == 5
    d = seq.to_dict()
    with pytest.raises(ValueError, match="'format'"):
        StageSequenceModel.from_dict({**d, "format": 99})
    with pytest.raises(ValueError, match="'stages'"):
        StageSequenceModel.from_dict({**d, "stages": ["W", "S1", "S2", "S3", "R"]})
    with pytest.raises(ValueError, match="'transitions'"):
        StageSequenceModel.from_dict({**d, "transitions": [[1, 0], [0, 1]]})
    with pytest.raises(ValueError, match="'prior'"):
        StageSequenceModel.from_dict({**d, "prior": [0, 1, 1, 1, 1]})
    with pytest.raises(ValueError, match="'pseudocount'"):
        StageSequenceModel.fit(["W", "W"], pseudocount=0)


def test_temper_softens_and_fit_temperature_recovers_overconfidence():
    rng = np.random.default_rng(0)
    q = rng.dirichlet(np.full(5, 0.6), size=4000)  # calibrated answers ...
    y = [STAGES[rng.choice(5, p=row)] for row in q]  # ... and labels drawn from them
    np.testing.assert_allclose(temper(q, 1.0), q, atol=1e-9)
    assert np.allclose(temper(q, 1e6), 0.2, atol=1e-3)  # infinite temperature: uniform
    over = temper(q, 1 / 3)  # the same answers, three times too sharp
    assert fit_temperature(over, y) == pytest.approx(3.0, rel=0.15)
    assert fit_temperature(q, y) == pytest.approx(1.0, rel=0.15)
    with_nan = np.vstack([over, np.full((1, 5), np.nan)])
    assert fit_temperature(with_nan, y + ["W"]) == pytest.approx(fit_temperature(over, y))
    with pytest.raises(ValueError, match="'proba'.*shape"):
        fit_temperature(over[:10], y)
    with pytest.raises(ValueError, match="'temperature'.*got 0"):
        temper(q, 0)


def test_temperature_lets_neighbours_outvote_an_overconfident_epoch():
    night = (["W"] * 60 + ["N1"] * 10 + ["N2"] * 60 + ["N3"] * 40 + ["N2"] * 20 + ["R"] * 30
             + ["W"] * 5 + ["N1"] * 5 + ["N2"] * 40 + ["W"] * 40)
    seq = StageSequenceModel.fit(night)
    proba = np.tile([0.96, 0.01, 0.01, 0.01, 0.01], (9, 1))
    proba[4] = [0.0005, 0.998, 0.0005, 0.0005, 0.0005]  # a lone, near-certain N1 inside wake
    assert seq.smooth(proba)[4].argmax() == N1
    assert seq.with_temperature(2.0).smooth(proba)[4].argmax() == W
    # Stored with the model; folders from before calibration decode as before (temperature 1).
    d = seq.with_temperature(2.5).to_dict()
    assert StageSequenceModel.from_dict(d).temperature == 2.5
    del d["temperature"]
    assert StageSequenceModel.from_dict(d).temperature == 1.0
    with pytest.raises(ValueError, match="'temperature'"):
        seq.with_temperature(-1.0)
