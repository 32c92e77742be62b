"""Evidence measured on synthetic signals with known events, and on the example night."""
from __future__ import annotations

import time

import numpy as np
import pytest

from eegvlm_desktop.core.picture.evidence import BANDS, measure_night
from eegvlm_desktop.core.recording.montage import pick_roles
from eegvlm_desktop.core.recording.recording import read_recording
from tests.conftest import EXAMPLE_PSG

NAMES = ("EEG C3-M2", "EOG horizontal", "EMG chin")
TYPES = ("eeg", "eog", "emg")
SF = 100.0
N_EP = 10
SPINDLE_TIMES = (44.0, 95.0, 110.0)  # burst starts (s): epochs 1, 3, 3
SW_EPOCHS = (6, 7)
REM_EPOCH = 8


class FakeRecording:
    """The slice of the Recording API the evidence code uses, over in-memory µV arrays."""

    def __init__(self, data: np.ndarray, sfreq: float) -> None:
        self.data, self.sfreq = np.asarray(data, float), float(sfreq)
        self.n_times = self.data.shape[1]
        self.ch_names, self.ch_types = list(NAMES), list(TYPES)
        self.orig_sfreqs = [self.sfreq] * len(NAMES)

    def get_data(self, picks=None, start=0, stop=None):
        picks = range(len(self.ch_names)) if picks is None else picks
        return self.data[list(picks), max(0, start):stop].copy()


def pink(rng: np.random.Generator, n: int, rms: float) -> np.ndarray:
    """1/f noise, the spectral shape of a background EEG (white noise has far more sigma)."""
    spec = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n, 1 / SF)
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    x = np.fft.irfft(spec, n)
    return x * rms / x.std()


def noise_night(seed: int = 0) -> np.ndarray:
    """Low-amplitude (5 µV RMS) 1/f noise on EEG and EOG, 10 µV white chin EMG: no events."""
    rng = np.random.default_rng(seed)
    n = int(N_EP * 30 * SF)
    data = np.stack([pink(rng, n, 5.0), pink(rng, n, 5.0), rng.normal(0, 10, n)])
    return data


def events_night() -> np.ndarray:
    data = noise_night()
    t = np.arange(data.shape[1]) / SF
    for t0 in SPINDLE_TIMES:  # 1-s, 13 Hz, ~50 µV spindles (tapered, as real ones wax and wane)
        m = (t >= t0) & (t < t0 + 1.0)
        data[0, m] += 50 * np.sin(2 * np.pi * 13 * t[m]) * np.hanning(m.sum())
    for ep in SW_EPOCHS:  # continuous 0.8 Hz, 150 µV peak-to-peak slow waves over whole epochs
        m = (t >= ep * 30) & (t < (ep + 1) * 30)
        data[0, m] += 75 * np.sin(2 * np.pi * 0.8 * (t[m] - ep * 30))
    # Rapid eye movements: 0.4-s, 300 µV deflections of the bipolar EOG, 3 s apart.
    for k in range(5):
        m = (t >= REM_EPOCH * 30 + 3 + 3 * k) & (t < REM_EPOCH * 30 + 3.4 + 3 * k)
        data[1, m] += 300 * np.hanning(m.sum())
    data[2, :3000] *= 3.0  # epoch 0: three times the chin tone
    return data


@pytest.fixture(scope="module")
def evidence() -> list:
    rec = FakeRecording(events_night(), SF)
    return measure_night(rec, pick_roles(NAMES, TYPES))


def test_spindles_are_found_in_the_right_epochs(evidence: list) -> None:
    counts = [e.n_spindles for e in evidence]
    assert counts == [0, 1, 0, 2, 0, 0, 0, 0, 0, 0]
    assert evidence[3].spindle_density == pytest.approx(4.0)


def test_slow_waves_cover_their_epochs_only(evidence: list) -> None:
    for e in evidence:
        if e.epoch in SW_EPOCHS:
            assert e.slow_wave_percent > 80 and e.n_slow_waves >= 20
            assert e.band_powers["delta"] > 0.8
            assert e.n_k_complexes == 0  # a train of slow waves is not a K-complex
        else:
            assert e.n_slow_waves == 0 and e.slow_wave_percent == 0


def test_eye_movements_and_chin_tone(evidence: list) -> None:
    rems = [e.n_rems for e in evidence]
    assert rems[REM_EPOCH] >= 4 and sum(rems) == rems[REM_EPOCH]
    assert evidence[REM_EPOCH].eog_slow_power > 10 * evidence[2].eog_slow_power
    assert evidence[0].emg_relative == pytest.approx(3.0, rel=0.1)
    assert evidence[5].emg_relative == pytest.approx(1.0, rel=0.1)
    assert evidence[5].emg_rms_uv == pytest.approx(10.0, rel=0.1)


def test_band_powers_are_relative(evidence: list) -> None:
    for e in evidence:
        assert set(e.band_powers) == set(BANDS)
        assert sum(e.band_powers.values()) == pytest.approx(1.0, abs=0.02)
    assert evidence[3].band_powers["sigma"] > evidence[2].band_powers["sigma"]


def test_pure_noise_has_no_events() -> None:
    ev = measure_night(FakeRecording(noise_night(seed=5), SF), pick_roles(NAMES, TYPES))
    assert all(e.n_spindles == e.n_slow_waves == e.n_k_complexes == e.n_rems == 0 for e in ev)


def test_an_isolated_large_slow_wave_counts_as_a_k_complex() -> None:
    data = noise_night()
    t = np.arange(data.shape[1]) / SF
    m = (t >= 125) & (t < 126.25)  # one 0.8 Hz cycle, negative first, 200 µV peak-to-peak
    data[0, m] -= 100 * np.sin(2 * np.pi * 0.8 * (t[m] - 125))
    ev = measure_night(FakeRecording(data, SF), pick_roles(NAMES, TYPES))
    assert [e.n_k_complexes for e in ev] == [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert ev[4].slow_wave_percent < 20


def test_epoch_subset_and_missing_roles() -> None:
    rec = FakeRecording(events_night(), SF)
    roles = dict(pick_roles(NAMES, TYPES), eog=None, emg=None)
    ev = measure_night(rec, roles, [3, 1])
    assert [e.epoch for e in ev] == [3, 1] and [e.n_spindles for e in ev] == [2, 1]
    assert ev[0].n_rems is None and ev[0].emg_rms_uv is None and ev[0].eog_slow_power is None
    with pytest.raises(ValueError, match="'epoch_indices'.*10"):
        measure_night(rec, roles, [10])
    with pytest.raises(ValueError, match="'roles'"):
        measure_night(rec, dict.fromkeys(roles))


def test_example_night_evidence_within_time_bound() -> None:
    if not EXAMPLE_PSG.exists():
        pytest.skip("resources/example is not present")
    rec = read_recording(EXAMPLE_PSG)
    t0 = time.perf_counter()
    ev = measure_night(rec, pick_roles(rec.ch_names, rec.ch_types))
    elapsed = time.perf_counter() - t0
    assert len(ev) == 852
    assert elapsed < 15.0  # ~1.5 s warm, ~5 s with the first yasa import on 2 cores
    assert sum(e.n_spindles for e in ev) > 20  # a normal night has spindles ...
    assert max(e.slow_wave_percent for e in ev) > 20  # ... and N3 epochs
