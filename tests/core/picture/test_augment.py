"""Training variants: lab-like perturbations of one epoch, deterministic, rendered by THE renderer."""
from __future__ import annotations

import numpy as np
import pytest

from eegvlm_desktop.core.picture import augment
from eegvlm_desktop.core.picture.augment import perturb, render_variants
from eegvlm_desktop.core.picture.rendering import (IMAGE_SIZE, RENDER_SFREQ, EpochSignals,
                                                   render_night)

T = np.arange(3000) / RENDER_SFREQ


def _signals() -> EpochSignals:
    """Fpz-Cz in two roles (as Sleep-EDF maps it), Pz-Oz, EOG, an EMG envelope, a NaN gap."""
    eeg = 20 * np.sin(2 * np.pi * 10 * T) + 5 * np.sin(2 * np.pi * 40 * T)
    eeg[:100] = np.nan
    sig = {"eeg_frontal": eeg, "eeg_central": eeg.copy(),
           "eeg_occipital": 10 * np.sin(2 * np.pi * 6 * T), "eog": 50 * np.sin(2 * np.pi * T),
           "emg": np.full(3000, 2.0)}
    names = {"eeg_frontal": "Fpz-Cz", "eeg_central": "Fpz-Cz", "eeg_occipital": "Pz-Oz",
             "eog": "EOG", "emg": "EMG"}
    return EpochSignals(sig, RENDER_SFREQ, channel_names=names)


def _gain(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.std(b[ok]) / np.std(a[ok]))


def test_same_seed_same_variant_and_input_untouched():
    sig = _signals()
    before = {r: x.copy() for r, x in sig.signals.items()}
    a = perturb(sig, np.random.default_rng(3))
    b = perturb(sig, np.random.default_rng(3))
    c = perturb(sig, np.random.default_rng(4))
    def same(x, y):
        return (x is None and y is None) or (
            x is not None and y is not None and np.array_equal(x, y, equal_nan=True))

    for role in sig.signals:
        assert same(a.signals[role], b.signals[role])
        assert same(sig.signals[role], before[role])
    assert not all(same(a.signals[r], c.signals[r]) for r in sig.signals)


@pytest.fixture
def gains_only(monkeypatch):
    for name in ("LOWPASS_P", "ONE_EEG_P", "DROP_P"):
        monkeypatch.setattr(augment, name, 0.0)


def test_gains_stay_in_range_and_shared_channels_share_one(gains_only):
    sig = _signals()
    seen = []
    for seed in range(40):
        out = perturb(sig, np.random.default_rng(seed))
        g = {r: _gain(sig.signals[r], out.signals[r]) for r in sig.signals if r != "emg"}
        assert g["eeg_frontal"] == pytest.approx(g["eeg_central"])  # one electrode pair
        assert augment.EEG_GAIN[0] - 1e-9 <= g["eeg_occipital"] <= augment.EEG_GAIN[1] + 1e-9
        assert augment.EOG_GAIN[0] - 1e-9 <= g["eog"] <= augment.EOG_GAIN[1] + 1e-9
        emg = out.signals["emg"] / 2.0
        assert np.ptp(emg) < 1e-12 and augment.EMG_GAIN[0] <= emg[0] <= augment.EMG_GAIN[1]
        assert np.isnan(out.signals["eeg_frontal"][:100]).all()  # gaps stay gaps
        seen.append(g["eeg_occipital"])
    # Log-uniform: both sides of 1 are drawn, spread over most of the range.
    assert min(seen) < 0.8 and max(seen) > 1.25


def test_lowpass_removes_what_a_50_hz_recording_cannot_hold(gains_only, monkeypatch):
    monkeypatch.setattr(augment, "LOWPASS_P", 1.0)
    monkeypatch.setattr(augment, "EEG_GAIN", (1.0, 1.0))
    sig = _signals()
    out = perturb(sig, np.random.default_rng(0)).signals["eeg_frontal"][200:-200]
    spec = np.abs(np.fft.rfft(out))
    freqs = np.fft.rfftfreq(out.size, 1 / RENDER_SFREQ)
    at = {f: spec[np.argmin(np.abs(freqs - f))] for f in (10, 40)}
    assert at[40] < 0.02 * at[10] * 5 / 20  # 40 Hz (was 1/4 of 10 Hz) is all but gone
    assert at[10] > 0.9 * np.abs(np.fft.rfft(sig.signals["eeg_frontal"][200:-200]))[
        np.argmin(np.abs(freqs - 10))]  # 10 Hz alpha passes
    # The EMG level is never filtered: it is a tone, not a waveform.
    assert np.ptp(perturb(sig, np.random.default_rng(0)).signals["emg"]) == 0


def test_single_channel_and_dropped_channels(gains_only, monkeypatch):
    monkeypatch.setattr(augment, "ONE_EEG_P", 1.0)
    monkeypatch.setattr(augment, "DROP_P", 1.0)
    sig = _signals()
    kept = set()
    for seed in range(12):
        out = perturb(sig, np.random.default_rng(seed))
        assert out.signals["eog"] is None and out.signals["emg"] is None
        f, c, o = (out.signals[r] for r in ("eeg_frontal", "eeg_central", "eeg_occipital"))
        assert np.array_equal(f, c, equal_nan=True) and np.array_equal(f, o, equal_nan=True)
        assert out.channel_names["eeg_occipital"] == out.channel_names["eeg_frontal"]
        kept.add(out.channel_names["eeg_frontal"])
    assert kept == {"Fpz-Cz", "Pz-Oz"}  # either channel may be the one kept
    assert sig.signals["eog"] is not None and sig.channel_names["eeg_occipital"] == "Pz-Oz"


def test_missing_roles_stay_missing():
    sig = _signals()
    sig.signals["eeg_occipital"] = None
    assert perturb(sig, np.random.default_rng(0)).signals["eeg_occipital"] is None


class _Recording:
    """Enough of a Recording for render_night: 3 channels at 100 Hz."""

    sfreq = 100.0
    ch_names = ["Fpz-Cz", "EOG", "EMG"]

    def __init__(self, n_epochs: int = 6):
        rng = np.random.default_rng(0)
        self.data = rng.normal(0, 20, (3, n_epochs * 3000))
        self.data[2] = np.abs(self.data[2]) / 10
        self.n_times = self.data.shape[1]

    def get_data(self, picks, start, stop):
        return self.data[list(picks), start:stop]


def test_render_variants_shape_determinism_and_difference():
    rec = _Recording()
    roles = {"eeg_frontal": 0, "eeg_central": 0, "eeg_occipital": None, "eog": 1, "emg": 2}
    v = render_variants(rec, roles, [4, 1, 2], 2, seed=5)
    assert v.shape == (3, 2, IMAGE_SIZE, IMAGE_SIZE, 3) and v.dtype == np.uint8
    assert np.array_equal(v, render_variants(rec, roles, [4, 1, 2], 2, seed=5))
    plain = render_night(rec, roles, [4, 1, 2])
    assert all((v[:, k] != plain).any() for k in range(2))
    assert (v[:, 0] != v[:, 1]).any()
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="'n_variants' parameter"):
            render_variants(rec, roles, [1], bad)
