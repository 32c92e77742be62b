"""The whole-night signal an export carries for adapting a model."""
from __future__ import annotations

import numpy as np
import pytest

from eegvlm_desktop.core.errors import EEGVLMError
from eegvlm_desktop.core.export.signal import SIGNAL_ROLES, SignalRecording, signal_bytes


class _Rec:
    def __init__(self, data, names, types, sfreq=100.0):
        self.data, self.ch_names, self.ch_types, self.sfreq = data, names, types, sfreq

    def get_data(self, picks, start=0, stop=None):
        return self.data[list(picks), start:stop]


def test_round_trip_within_the_int16_step():
    rng = np.random.default_rng(0)
    data = rng.normal(0, 40, (3, 6000))
    data[2, 10] = np.nan  # a gap reads as 0, as the cohort stagers read it
    rec = _Rec(data, ["Fpz-Cz", "C3-A1", "EOG"], ["eeg", "eeg", "eog"])
    roles = {"eeg_frontal": 0, "eeg_central": 1, "eeg_occipital": None, "eog": 2, "emg": None}
    back = SignalRecording(signal_bytes(rec, roles))
    assert back.roles == {"eeg_frontal": 0, "eeg_central": 1, "eeg_occipital": None, "eog": 2}
    assert back.ch_names == rec.ch_names and back.ch_types == rec.ch_types
    assert back.sfreq == 100.0 and back.n_epochs() == 2 and back.duration == 60.0
    got = back.get_data([0, 1])
    step = np.abs(data[:2]).max(axis=1, keepdims=True) / 32000
    assert np.all(np.abs(got - data[:2]) <= step)
    assert back.get_data([2])[0, 10] == 0.0
    assert back.get_data([1], 100, 200).shape == (1, 100)


def test_one_channel_filling_every_eeg_role_is_stored_once():
    rec = _Rec(np.ones((1, 3000)), ["Cz-A1"], ["eeg"])
    roles = {"eeg_frontal": 0, "eeg_central": 0, "eeg_occipital": 0, "eog": None}
    back = SignalRecording(signal_bytes(rec, roles))
    assert back.get_data().shape == (1, 3000)
    assert [back.roles[r] for r in SIGNAL_ROLES] == [0, 0, 0, None]


def test_no_usable_channel_and_a_damaged_file():
    rec = _Rec(np.ones((1, 300)), ["EMG"], ["emg"])
    assert signal_bytes(rec, {"emg": 0}) is None
    with pytest.raises(EEGVLMError, match="not a signal file"):
        SignalRecording(b"not a zip")
