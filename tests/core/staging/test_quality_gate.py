"""The per-epoch signal-quality gate: unusable EEG never gets a stage."""
from __future__ import annotations

import numpy as np
import pytest

from eegvlm_desktop.core.staging.quality_gate import channel_problem, epoch_quality


class _Rec:
    """A minimal recording: ``data`` in µV at 100 Hz."""

    def __init__(self, data: np.ndarray, names: list[str]) -> None:
        self.data, self.ch_names, self.sfreq = data, names, 100.0
        self.n_times = data.shape[1]

    def get_data(self, picks, start=0, stop=None):
        return self.data[list(picks), start:stop].copy()


def _eeg(n_epochs: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 20, n_epochs * 3000)


def test_each_kind_of_bad_epoch_is_named() -> None:
    assert channel_problem(_eeg(1)) == ""
    assert "constant" in channel_problem(np.full(3000, 3.0))
    assert "flat" in channel_problem(_eeg(1) * 0.005)
    assert "volts" in channel_problem(_eeg(1) * 1e-6)
    clipped = np.clip(_eeg(1) * 30, -300, 300)  # ~62 % of the samples beyond +-300
    assert "clipped" in channel_problem(clipped)
    gap = _eeg(1)
    gap[:2000] = np.nan
    assert "missing" in channel_problem(gap)
    # mild clipping (a few peaks on the rail) is still scorable
    assert channel_problem(np.clip(_eeg(1), -45, 45)) == ""


def test_epoch_unscorable_only_when_every_channel_is_bad() -> None:
    a, b = _eeg(4, 1), _eeg(4, 2)
    a[3000:6000] = 0.0          # epoch 1: channel A flat, B fine -> scorable
    a[6000:9000] = b[6000:9000] = 0.0  # epoch 2: both constant -> unscorable
    rec = _Rec(np.vstack([a, b]), ["EEG C3-M2", "EEG C4-M1"])
    q = epoch_quality(rec, [0, 1])
    assert q[0] == q[1] == q[3] == ""
    assert "EEG C3-M2: constant" in q[2] and "EEG C4-M1: constant" in q[2]
    assert epoch_quality(rec, [0, 1], epochs=[2]) == [q[2]]


def test_errors_name_the_parameter() -> None:
    rec = _Rec(np.vstack([_eeg(2)]), ["EEG"])
    with pytest.raises(ValueError, match="'channels'"):
        epoch_quality(rec, [])
    with pytest.raises(ValueError, match="'epochs'.*0..1"):
        epoch_quality(rec, [0], epochs=[5])
