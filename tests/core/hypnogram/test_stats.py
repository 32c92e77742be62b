"""Sleep statistics against numbers worked out by hand."""
from __future__ import annotations

import math

import pytest

from eegvlm_desktop.core.hypnogram.hypnogram import Hypnogram
from eegvlm_desktop.core.hypnogram.stats import STAT_KEYS, STAT_LABELS, sleep_statistics


def test_hand_made_hypnogram():
    # 10 W, 20 N2, 4 W, 6 R epochs of 30 s = 40 epochs = 20 min in bed.
    hyp = Hypnogram(["W"] * 10 + ["N2"] * 20 + ["W"] * 4 + ["R"] * 6)
    s = sleep_statistics(hyp)
    assert set(s) == set(STAT_KEYS)
    assert s["TIB"] == pytest.approx(20.0)
    assert s["SOL"] == pytest.approx(5.0)       # 10 wake epochs before the first N2
    assert s["SPT"] == pytest.approx(15.0)      # first sleep (epoch 10) to last (39): 30 epochs
    assert s["WASO"] == pytest.approx(2.0)      # 4 wake epochs inside the sleep period
    assert s["TST"] == pytest.approx(13.0)      # 20 N2 + 6 R epochs
    assert s["SE"] == pytest.approx(65.0)       # 13 / 20
    # first R is epoch 34 (17 min from the start); sleep onset at 5 min -> 12 min (AASM)
    assert s["Lat_REM"] == pytest.approx(12.0)
    assert s["W"] == pytest.approx(7.0) and s["N2"] == pytest.approx(10.0)
    assert s["R"] == pytest.approx(3.0) and s["N1"] == 0.0 and s["N3"] == 0.0
    assert s["%N2"] == pytest.approx(100 * 10 / 13, abs=1e-3)
    assert s["%R"] == pytest.approx(100 * 3 / 13, abs=1e-3)
    assert all(isinstance(v, float) for v in s.values())


def test_other_epoch_length_and_unscored_epochs():
    # 20-s epochs; unscored epochs count in bed but not as sleep.
    hyp = Hypnogram(["UNS", "W", "N1", "N3", "UNS", "N3", "W"], epoch_length=20.0)
    s = sleep_statistics(hyp)
    # YASA rounds every value to 4 decimals.
    assert s["TIB"] == pytest.approx(7 * 20 / 60, abs=1e-4)
    assert s["TST"] == pytest.approx(3 * 20 / 60, abs=1e-4)
    assert s["SPT"] == pytest.approx(4 * 20 / 60, abs=1e-4)
    assert s["WASO"] == 0.0
    assert s["SOL"] == pytest.approx(2 * 20 / 60, abs=1e-4)
    assert s["SE"] == pytest.approx(100 * 3 / 7, abs=1e-3)
    assert math.isnan(s["Lat_REM"]) and s["%R"] == 0.0  # no REM: latency undefined, share 0


def test_all_unscored_and_empty_give_nan_not_errors():
    s = sleep_statistics(Hypnogram.unscored(10))
    assert s["TIB"] == pytest.approx(5.0) and s["TST"] == 0.0
    for key in ("SOL", "WASO", "Lat_REM", "%N1", "%N2", "%N3", "%R"):
        assert math.isnan(s[key]), key
    assert all(math.isnan(v) for v in sleep_statistics(Hypnogram([])).values())


def test_labels_cover_every_key_with_a_unit():
    assert list(STAT_LABELS) == list(STAT_KEYS)
    assert all(label.endswith(("(min)", "(%)", "(% of TST)")) for label in STAT_LABELS.values())


@pytest.mark.parametrize("seed", range(6))
def test_same_numbers_as_yasa(seed):
    # The statistics are YASA's definitions written in numpy (no YASA import in the viewer):
    # they must stay identical to YASA's own, key for key, on nights with every label.
    import warnings

    import numpy as np
    yasa = pytest.importorskip("yasa")
    rng = np.random.default_rng(seed)
    labels = ["W", "N1", "N2", "N3", "R", "ART", "UNS"]
    n = int(rng.integers(1, 400))
    stages = list(rng.choice(labels, n, p=[.3, .1, .3, .1, .1, .05, .05]))
    if seed == 0:
        stages = ["W"] * n  # no sleep at all
    epoch = (30.0, 20.0, 2.5)[seed % 3]
    s = sleep_statistics(Hypnogram(stages, epoch_length=epoch))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = yasa.Hypnogram([{"W": "WAKE", "R": "REM"}.get(x, x) for x in stages], n_stages=5,
                           freq=f"{int(epoch * 1000)}ms").sleep_statistics()
    keys = {"W": "WAKE", "R": "REM", "%R": "%REM"}
    for key in STAT_KEYS:
        want = float(y.get(keys.get(key, key), math.nan))
        if key == "Lat_REM":
            want -= float(y["SOL"])
        assert (math.isnan(s[key]) and math.isnan(want)) or s[key] == want, (key, s[key], want)
