"""Patch-grid attention mapped back to channels x time, with synthetic maps."""
from __future__ import annotations

import numpy as np
import pytest

from eegvlm_desktop.core.staging.attention_map import (attention_to_lanes, band_row_weights,
                                                       channel_attention, tf_channel, window_span)

# Sleep-EDF-like montage: Fpz-Cz (0) frontal and stand-in central, Pz-Oz (1) occipital,
# EOG (2), chin EMG (3).
ROLES = {"eeg_frontal": 0, "eeg_central": 0, "eeg_occipital": 1, "eog": 2, "emg": 3}


@pytest.mark.parametrize("grid", [7, 14, 16])
def test_row_weights_follow_band_pixels(grid):
    w = band_row_weights(grid)
    assert list(w) == ["eeg_frontal", "eeg_central", "eeg_occipital", "eog", "emg", "tf"]
    for v in w.values():
        assert v.shape == (grid,) and v.sum() == pytest.approx(1.0) and (v >= 0).all()
    # 16-px patches: EOG spans pixel rows 108-143 -> 4 px of row 6, all of rows 7 and 8.
    if grid == 14:
        assert w["eog"][[6, 7, 8]] == pytest.approx(np.array([4, 16, 16]) / 36)
        assert w["eog"].sum() - w["eog"][[6, 7, 8]].sum() == pytest.approx(0)
        assert w["tf"][[11, 12, 13]] == pytest.approx(np.array([12, 16, 16]) / 44)


def test_attention_on_eog_rows_only_marks_eog_at_those_times():
    att = np.zeros((14, 14))
    att[7:9, 5:7] = 1.0  # patch rows 7-8 lie wholly inside the EOG band
    out = channel_attention(att, ROLES)
    assert set(out.lanes) == {0, 1, 2, 3}
    eog = out.lanes[2]
    assert eog[5] == pytest.approx(1.0) and eog[6] == pytest.approx(1.0)
    assert np.delete(eog, [5, 6]) == pytest.approx(0.0)
    for ch in (0, 1, 3):
        assert out.lanes[ch] == pytest.approx(0.0)
    assert out.tf == pytest.approx(0.0) and out.tf_channel == 0


def test_straddling_patch_row_is_shared_by_overlap():
    att = np.zeros((14, 14))
    att[6, 3] = 1.0  # row 6 = pixels 96-111: 12 px occipital, 4 px EOG
    out = channel_attention(att, ROLES)
    # Occipital mean 12/36, EOG mean 4/36; scaled from the mean of all 6 x 14 band cells
    # (0) up to the larger one (1).
    mean = (12 / 36 + 4 / 36) / (6 * 14)
    assert out.lanes[1][3] == pytest.approx(1.0)
    assert out.lanes[2][3] == pytest.approx((4 / 36 - mean) / (12 / 36 - mean))
    assert out.lanes[2][4] == 0.0  # below the mean: clear, not negative


def test_channel_filling_several_roles_takes_the_max():
    att = np.zeros((14, 14))
    att[0:2, 0] = 1.0  # frontal band only (pixels 0-31 of 0-35)
    att[3, 9] = 0.5  # central band only (pixels 48-63)
    single = {"eeg_frontal": 0, "eeg_central": 0, "eeg_occipital": 0, "eog": None, "emg": None}
    out = channel_attention(att, single)
    assert set(out.lanes) == {0}
    lane = out.lanes[0]
    frontal = 32 / 36  # mean over the band of the two full rows
    mean = (frontal + 0.5 * 16 / 36) / (6 * 14)
    assert lane[0] == pytest.approx(1.0)
    assert lane[9] == pytest.approx((0.5 * 16 / 36 - mean) / (frontal - mean))
    assert lane[1] == pytest.approx(0.0)


def test_time_frequency_strip_is_separate_and_mergeable():
    att = np.zeros((14, 14))
    att[12:14, 10] = 2.0  # the spectrogram's bottom rows (slow frequencies)
    out = channel_attention(att, {"eeg_frontal": 0, "eeg_central": 4, "eeg_occipital": 1,
                                   "eog": 2, "emg": None})
    assert out.tf_channel == 4 and out.tf[10] == pytest.approx(1.0)
    assert out.lanes[4] == pytest.approx(0.0)  # the central trace band itself got nothing
    merged = out.merged()
    assert merged[4][10] == pytest.approx(1.0) and merged[0][10] == pytest.approx(0.0)
    assert out.lanes[4][10] == pytest.approx(0.0)  # merged() leaves the original alone


def test_normalisation_is_one_scale_for_the_whole_map():
    rng = np.random.default_rng(0)
    att = rng.random((14, 14)) + 3.0
    out = channel_attention(att, ROLES)
    allv = np.concatenate(list(out.lanes.values()) + [out.tf])
    assert allv.min() >= 0 and allv.max() <= 1 + 1e-12
    assert max(v.max() for v in list(out.lanes.values()) + [out.tf]) == pytest.approx(1.0)
    flat = channel_attention(np.ones((7, 7)), ROLES)
    assert all((v == 0).all() for v in flat.lanes.values())


def test_missing_roles_and_bad_input():
    out = channel_attention(np.ones((7, 7)), {"eog": 2})
    assert set(out.lanes) == {2} and out.tf is None and out.tf_channel is None
    assert tf_channel({"eeg_occipital": 5, "eeg_frontal": 3}) == 3  # first EEG role present
    with pytest.raises(ValueError, match="att_map"):
        channel_attention(np.ones((7, 8)), ROLES)
    with pytest.raises(ValueError, match="att_map"):
        channel_attention(np.full((7, 7), np.nan), ROLES)
    with pytest.raises(ValueError, match="roles"):
        channel_attention(np.ones((7, 7)), {"ecg": 1})
    with pytest.raises(ValueError, match="grid"):
        band_row_weights(0)


def test_attention_to_lanes_is_the_plain_dict_of_lanes():
    att = np.zeros((14, 14))
    att[7, 2] = 1.0
    lanes = attention_to_lanes(att, ROLES)
    assert type(lanes) is dict and set(lanes) == {0, 1, 2, 3}
    assert lanes[2][2] == pytest.approx(1.0)


def test_window_span_with_context():
    assert window_span(10) == (300.0, 30.0)
    assert window_span(10, 30.0, context=1) == (270.0, 90.0)
