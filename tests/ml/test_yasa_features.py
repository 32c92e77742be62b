"""YASA's staging features without YASA: the same numbers as ``SleepStaging.get_features``."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from eegvlm_desktop.ml.yasa_features import RATE, eeg_features

EXAMPLE = Path(__file__).resolve().parents[2] / "resources/example/SC4001-example-PSG.edf"


def _yasa_features(x_uv: np.ndarray, sfreq: float):
    """YASA's own features and the 100-Hz signal it computed them from."""
    import mne
    import yasa

    raw = mne.io.RawArray(x_uv[None] * 1e-6, mne.create_info(["EEG"], sfreq, ["eeg"]),
                          verbose="error")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # YASA's own (pandas, scipy) on flat stretches
        stager = yasa.SleepStaging(raw, eeg_name="EEG")
        return stager.get_features(), stager.data[0]


def _night(n_epochs: int, sfreq: float, seed: int) -> np.ndarray:
    """Noise with slow waves, spindles and alpha drifting over the night, plus a flat stretch."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(n_epochs * 30 * sfreq)) / sfreq
    depth = 0.5 + 0.5 * np.sin(2 * np.pi * t / t[-1] * 3)
    x = (rng.normal(0, 15, t.size) + 60 * depth * np.sin(2 * np.pi * 0.8 * t)
         + 10 * (1 - depth) * np.sin(2 * np.pi * 10 * t) + 8 * np.sin(2 * np.pi * 13 * t))
    x[int(5 * 30 * sfreq):int(7 * 30 * sfreq)] = 0.0  # two flat epochs: NaN features
    return x


@pytest.mark.parametrize("sfreq, seed", [(100.0, 0), (256.0, 1), (128.0, 2)])
def test_features_equal_yasa_to_the_last_bit(sfreq, seed) -> None:
    ref, data = _yasa_features(_night(40, sfreq, seed), sfreq)
    names, ours = eeg_features(data)
    assert names == list(ref.columns)
    np.testing.assert_array_equal(ours, ref.to_numpy(dtype=np.float64))


@pytest.mark.slow
@pytest.mark.skipif(not EXAMPLE.is_file(), reason="the bundled example night is absent")
def test_example_night_features_equal_yasa() -> None:
    from eegvlm_desktop.core.recording.recording import read_recording

    rec = read_recording(EXAMPLE)
    n = rec.n_epochs(30.0)
    x = rec.get_data([rec.ch_names.index("EEG Fpz-Cz")], 0, int(n * 30 * rec.sfreq))[0]
    ref, data = _yasa_features(x, rec.sfreq)
    names, ours = eeg_features(data)
    assert names == list(ref.columns) and len(ours) == n
    np.testing.assert_array_equal(ours, ref.to_numpy(dtype=np.float64))


def test_too_short_is_refused_with_the_parameter() -> None:
    with pytest.raises(ValueError, match="'data_uv'.*3000 samples at 100 Hz.*shape \\(2999,\\)"):
        eeg_features(np.zeros(int(30 * RATE) - 1))
