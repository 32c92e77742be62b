"""The model-input renderer and the role picker: deterministic, rate-independent, fixed-scale."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from eegvlm_desktop.core.picture.rendering import (EMG_LEVEL_UV, IMAGE_SIZE, MISSING_COLOR,
                                                   TF_FREQS, EpochSignals, emg_envelope,
                                                   image_layout, prepare_epoch, render_epoch,
                                                   render_night)
from eegvlm_desktop.core.recording.montage import ROLES, describe_roles, pick_roles
from eegvlm_desktop.core.recording.recording import infer_type, read_recording
from tests.conftest import EXAMPLE_PSG

NAMES = ("EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal", "EMG submental")
TYPES = ("eeg", "eeg", "eog", "emg")
ROLE_MAP = {"eeg_frontal": 0, "eeg_central": 0, "eeg_occipital": 1, "eog": 2, "emg": 3}


class FakeRecording:
    """The slice of the Recording API the renderer uses, over in-memory µV arrays."""

    def __init__(self, data: np.ndarray, sfreq: float, names=NAMES, types=TYPES) -> None:
        self.data, self.sfreq = np.asarray(data, float), float(sfreq)
        self.n_times = self.data.shape[1]
        self.ch_names, self.ch_types = list(names), list(types)
        self.orig_sfreqs = [self.sfreq] * len(names)

    def get_data(self, picks=None, start=0, stop=None):
        picks = range(len(self.ch_names)) if picks is None else picks
        return self.data[list(picks), max(0, start):stop].copy()


def smooth_signal(t: np.ndarray, seed: int = 1) -> np.ndarray:
    """Band-limited (< 20 Hz) 4-channel signal defined in continuous time, so any rate samples
    the same waveform: a sum of sines with fixed random frequencies and phases."""
    rng = np.random.default_rng(seed)
    out = np.zeros((4, t.size))
    for ch in range(4):
        for f, a, p in zip(rng.uniform(0.5, 20, 12), rng.uniform(5, 25, 12),
                           rng.uniform(0, 2 * np.pi, 12)):
            out[ch] += a * np.sin(2 * np.pi * f * t + p)
    return out


def make_rec(sfreq: float, seconds: float = 120.0) -> FakeRecording:
    return FakeRecording(smooth_signal(np.arange(int(seconds * sfreq)) / sfreq), sfreq)


def band_rows(name: str) -> slice:
    band = next(b for b in image_layout() if b.name == name)
    return slice(band.top, band.top + band.height)


def test_layout_covers_the_image_in_role_order() -> None:
    bands = image_layout()
    assert [b.name for b in bands] == list(ROLES) + ["tf"]
    assert bands[0].top == 0 and bands[-1].top + bands[-1].height == IMAGE_SIZE
    for a, b in zip(bands, bands[1:]):
        assert a.top + a.height == b.top


def test_render_is_deterministic_uint8_rgb() -> None:
    rec = make_rec(100.0)
    a = render_epoch(prepare_epoch(rec, 1, ROLE_MAP))
    b = render_epoch(prepare_epoch(rec, 1, ROLE_MAP))
    assert a.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and a.dtype == np.uint8
    assert a.tobytes() == b.tobytes()
    assert a[band_rows("eeg_frontal")].any() and a[band_rows("tf")].any()


@pytest.mark.parametrize(("sfreq", "max_diff_frac"), [(200.0, 0.02), (256.0, 0.02), (50.0, 0.08)])
def test_same_signal_at_other_rates_renders_alike(sfreq: float, max_diff_frac: float) -> None:
    ref = render_epoch(prepare_epoch(make_rec(100.0), 2, ROLE_MAP)).astype(int)
    img = render_epoch(prepare_epoch(make_rec(sfreq), 2, ROLE_MAP)).astype(int)
    # Resampling filters differ slightly, so a pixel may move by one row: allow a small
    # fraction of pixels to differ by more than a few grey levels (50 Hz loses 25-30 Hz: looser).
    frac = np.mean(np.abs(ref - img).max(axis=2) > 8)
    assert frac < max_diff_frac


def test_missing_role_is_an_empty_band_with_a_grey_line() -> None:
    roles = dict(ROLE_MAP, eog=None)
    img = render_epoch(prepare_epoch(make_rec(100.0), 0, roles))
    band = img[band_rows("eog")]
    lit = np.flatnonzero(band.any(axis=(1, 2)))
    assert len(lit) == 1 and lit[0] in (band.shape[0] // 2 - 1, band.shape[0] // 2)
    assert (band[lit[0]] == MISSING_COLOR).all()


def sine_signals(amp: float) -> EpochSignals:
    t = np.arange(3000) / 100.0
    sig = {r: None for r in ROLES}
    sig["eeg_frontal"] = amp * np.sin(2 * np.pi * 1.0 * t)
    return EpochSignals(sig)


def lit_rows(img: np.ndarray, role: str) -> np.ndarray:
    return np.flatnonzero(img[band_rows(role)].any(axis=(1, 2)))


def test_fixed_scale_larger_signal_draws_taller_and_clips() -> None:
    small = lit_rows(render_epoch(sine_signals(25.0)), "eeg_frontal")
    large = lit_rows(render_epoch(sine_signals(50.0)), "eeg_frontal")
    huge = lit_rows(render_epoch(sine_signals(400.0)), "eeg_frontal")
    h = band_rows("eeg_frontal").stop - band_rows("eeg_frontal").start
    span_s, span_l = np.ptp(small) + 1, np.ptp(large) + 1
    assert 1.7 < span_l / span_s < 2.3  # twice the µV, twice the pixels: no auto-scaling
    assert huge.min() == 0 and huge.max() == h - 1  # clipped at the band edges
    # The band stays within its rows: nothing of the frontal trace leaks into the next band.
    img = render_epoch(sine_signals(400.0))
    central = img[band_rows("eeg_central")]  # a missing role: only its grey line
    assert set(map(tuple, central.reshape(-1, 3))) == {(0, 0, 0), MISSING_COLOR}


def emg_signals(emg: np.ndarray | None) -> EpochSignals:
    sig = {r: None for r in ROLES}
    sig["emg"] = emg
    return EpochSignals(sig)


def level_rows(img: np.ndarray) -> np.ndarray:
    """Lit rows per column of the EMG band (the level's height in pixels)."""
    return img[band_rows("emg")].any(axis=2).sum(axis=0)


def test_raw_emg_envelope_is_its_1s_rms_in_the_muscle_band() -> None:
    rng = np.random.default_rng(5)
    t = np.arange(3000) / 100.0
    # 8 µV RMS of muscle-band noise on top of a 40 µV, 0.5-Hz drift the high-pass must drop.
    hp_noise = np.diff(rng.normal(0, 1, 3001))  # white-ish, most power above 10 Hz
    from scipy import signal as sps
    sos = sps.butter(4, 12, "highpass", fs=100, output="sos")
    muscle = sps.sosfiltfilt(sos, hp_noise)
    muscle *= 8.0 / np.sqrt(np.mean(muscle ** 2))
    env = emg_envelope(muscle + 40 * np.sin(2 * np.pi * 0.5 * t), 100.0)
    assert np.median(env[200:-200]) == pytest.approx(8.0, rel=0.2)
    # Already an envelope (Sleep-EDF's 1-Hz chin RMS, positive and slow): kept as it is.
    slow = 2.0 + np.sin(2 * np.pi * 0.05 * t)
    np.testing.assert_allclose(emg_envelope(slow, 100.0), slow)
    gap = slow.copy()
    gap[:500] = np.nan  # off-recording samples stay off the picture
    assert np.isnan(emg_envelope(gap, 100.0)[:500]).all()


def test_emg_is_a_log_level_higher_tone_draws_taller() -> None:
    heights = [int(np.median(level_rows(render_epoch(emg_signals(np.full(3000, uv))))))
               for uv in (0.2, 2.0, 20.0)]
    h = band_rows("emg").stop - band_rows("emg").start
    assert 0 < heights[0] < heights[1] < heights[2] <= h
    # A decade is the same height anywhere on the scale (log), within a pixel of rounding.
    assert abs((heights[2] - heights[1]) - (heights[1] - heights[0])) <= 1
    # Sleep-EDF's REM (~0.2 µV) and wake (~3.4 µV) chin tone differ by many pixels, where
    # renderer 1's +-50 µV trace showed both as the same ~1-pixel line.
    rem = np.median(level_rows(render_epoch(emg_signals(np.full(3000, 0.2)))))
    wake = np.median(level_rows(render_epoch(emg_signals(np.full(3000, 3.4)))))
    assert wake - rem >= 10
    top = level_rows(render_epoch(emg_signals(np.full(3000, 10 * EMG_LEVEL_UV[1])))).min()
    assert top == h  # clipped at the band's top, never into the next band
    half = np.full(3000, 2.0)
    half[1500:] = np.nan
    cols = level_rows(render_epoch(emg_signals(half)))
    assert (cols[:100] > 0).all() and (cols[-100:] == 0).all()


def test_missing_emg_is_a_grey_line() -> None:
    band = render_epoch(emg_signals(None))[band_rows("emg")]
    lit = np.flatnonzero(band.any(axis=(1, 2)))
    assert len(lit) == 1 and (band[lit[0]] == MISSING_COLOR).all()


def test_time_frequency_strip_shows_a_spindle_burst() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(3000) / 100.0
    x = rng.normal(0, 3, t.size)
    burst = (t >= 14.5) & (t < 15.5)
    x[burst] += 50 * np.sin(2 * np.pi * 13 * t[burst]) * np.hanning(burst.sum())
    sig = {r: None for r in ROLES}
    sig["eeg_central"] = x
    tf = render_epoch(EpochSignals(sig))[band_rows("tf")].astype(float).sum(axis=2)
    h = tf.shape[0]
    row_f = TF_FREQS[1] - (np.arange(h) + 0.5) * (TF_FREQS[1] - TF_FREQS[0]) / h
    spindle_rows = (row_f >= 12) & (row_f <= 14)
    cols_burst = slice(int(14.7 / 30 * IMAGE_SIZE), int(15.3 / 30 * IMAGE_SIZE))
    cols_quiet = slice(0, int(10 / 30 * IMAGE_SIZE))
    at_burst = tf[spindle_rows, cols_burst].mean()
    assert at_burst > tf[spindle_rows, cols_quiet].mean() + 100
    assert at_burst > tf[(row_f >= 24) & (row_f <= 28), cols_burst].mean() + 100


def test_render_night_matches_single_epochs_in_any_order() -> None:
    rec = make_rec(256.0, seconds=300.0)
    idx = [7, 0, 3, 9, 3]
    night = render_night(rec, ROLE_MAP, idx, chunk_epochs=4)
    assert night.shape == (5, IMAGE_SIZE, IMAGE_SIZE, 3)
    for k, ep in enumerate(idx):
        single = render_epoch(prepare_epoch(rec, ep, ROLE_MAP)).astype(int)
        assert np.mean(np.abs(single - night[k]).max(axis=2) > 8) < 0.005


def test_context_epochs_widen_the_window_and_pad_with_nan() -> None:
    sig = prepare_epoch(make_rec(100.0, 90.0), 0, ROLE_MAP, context=1)
    assert sig.signals["eeg_frontal"].shape == (9000,)
    assert np.isnan(sig.signals["eeg_frontal"][:3000]).all()
    assert np.isfinite(sig.signals["eeg_frontal"][3000:]).all()
    render_epoch(sig)  # the off-recording third renders blank, without warnings


def test_invalid_arguments_name_the_parameter() -> None:
    rec = make_rec(100.0)
    with pytest.raises(ValueError, match="'epoch_index'.*-1"):
        prepare_epoch(rec, -1, ROLE_MAP)
    with pytest.raises(ValueError, match="'context'"):
        prepare_epoch(rec, 0, ROLE_MAP, context=1.5)
    with pytest.raises(ValueError, match="'signals'.*bogus"):
        render_epoch(EpochSignals({"bogus": np.zeros(3000)}))


def test_render_speed_is_a_few_ms_per_epoch() -> None:
    sig = prepare_epoch(make_rec(100.0), 1, ROLE_MAP)
    render_epoch(sig)
    t0 = time.perf_counter()
    for _ in range(50):
        render_epoch(sig)
    assert 50 / (time.perf_counter() - t0) >= 50  # ~700/s measured; a loose bound for slow CI


# ---- role picking -------------------------------------------------------------------------
def test_roles_for_sleep_edf_names() -> None:
    roles = pick_roles(NAMES, TYPES)
    assert roles == ROLE_MAP  # no central electrode: Fpz-Cz stands in
    lines = describe_roles(roles, NAMES)
    assert lines[1] == "EEG central: EEG Fpz-Cz (stand-in, no central electrode)"
    assert lines[0] == "EEG frontal: EEG Fpz-Cz"


def test_single_c3_a1_fills_every_eeg_role() -> None:
    roles = pick_roles(["C3-A1"], ["eeg"])
    assert roles == {"eeg_frontal": 0, "eeg_central": 0, "eeg_occipital": 0, "eog": None,
                     "emg": None}
    assert pick_roles(["C3-A1"], ["eeg"], fill_missing=False)["eeg_frontal"] is None
    assert "none" in describe_roles(roles, ["C3-A1"])[3]


def test_dreams_like_names() -> None:
    names = ["ECG", "FP1-A2", "CZ-A1", "EMG1", "EOG1-A1", "EOG2-A1", "O1-A2", "C3-A1",
             "PHONO", "SAO2"]
    types = [infer_type(n) for n in names]
    roles = pick_roles(names, types)
    assert {r: names[i] for r, i in roles.items()} == {
        "eeg_frontal": "FP1-A2", "eeg_central": "C3-A1", "eeg_occipital": "O1-A2",
        "eog": "EOG1-A1", "emg": "EMG1"}


def test_aasm_montage_prefers_contralateral_and_ignores_leg_emg() -> None:
    names = ["EEG F4-M1", "EEG C4-M2", "EEG C3-M2", "EEG O2-M1", "E1-M2", "E2-M2",
             "Leg EMG", "Chin1-Chin2"]
    types = [infer_type(n) for n in names]
    roles = pick_roles(names, types)
    assert {r: names[i] for r, i in roles.items()} == {
        "eeg_frontal": "EEG F4-M1", "eeg_central": "EEG C3-M2", "eeg_occipital": "EEG O2-M1",
        "eog": "E1-M2", "emg": "Chin1-Chin2"}
    with pytest.raises(ValueError, match="'ch_types'"):
        pick_roles(names, types[:-1])


def test_renders_a_real_edf_file(tiny_edf: Path) -> None:
    rec = read_recording(tiny_edf)
    roles = pick_roles(rec.ch_names, rec.ch_types)
    imgs = render_night(rec, roles, [0, 9])
    assert imgs.shape == (2, IMAGE_SIZE, IMAGE_SIZE, 3) and imgs.any()


def test_example_night_renders_20_epochs_quickly() -> None:
    if not EXAMPLE_PSG.exists():
        pytest.skip("resources/example is not present")
    rec = read_recording(EXAMPLE_PSG)
    roles = pick_roles(rec.ch_names, rec.ch_types)
    t0 = time.perf_counter()
    imgs = render_night(rec, roles, range(400, 420))
    assert time.perf_counter() - t0 < 5.0
    assert imgs.shape == (20, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert len({im.tobytes() for im in imgs}) == 20


def test_renderer_2_bytes_of_the_example_night_are_unchanged() -> None:
    """Every pixel the shipped model was trained on: a change here needs a new
    RENDERER_VERSION (and new weights), never a silent edit of this checksum."""
    import hashlib

    from eegvlm_desktop.core.picture.rendering import RENDERER_VERSION

    if not EXAMPLE_PSG.exists():
        pytest.skip("resources/example is not present")
    rec = read_recording(EXAMPLE_PSG)
    imgs = render_night(rec, pick_roles(rec.ch_names, rec.ch_types), range(0, 852, 8))
    assert RENDERER_VERSION == "2"
    assert hashlib.sha256(imgs.tobytes()).hexdigest() == (
        "67c51ee3d9730014859169dc38a497202b127201e16b690cadf8567693418626")


def test_a_window_draws_the_same_alone_and_in_any_batch() -> None:
    from eegvlm_desktop.core.picture.rendering import render_epochs

    rng = np.random.default_rng(3)
    batch = []
    for k in range(7):
        s = {r: rng.normal(0, 40, 3000) for r in ROLES}
        s["emg"] = rng.normal(0, 3, 3000) * (k + 1)
        if k == 1:
            s["eeg_frontal"][:700] = np.nan  # off the recording's start
        if k == 2:
            s["emg"] = np.abs(s["emg"])  # an envelope channel
        if k == 3:
            s["emg"][:] = np.nan
        if k == 4:
            s["eog"] = None  # other roles: drawn in a group of their own
        if k == 5:
            s = {r: v.astype(np.float32) for r, v in s.items()}
        if k == 6:
            s = {r: v[:1000] for r, v in s.items()}  # another length
        batch.append(EpochSignals(s, 100.0 if k != 6 else 33.3))
    together = render_epochs(batch)
    for k, sig in enumerate(batch):
        assert np.array_equal(together[k], render_epoch(sig)), k
    assert np.array_equal(render_epochs(batch[::-1])[::-1], together)
    assert render_epochs([]).shape == (0, IMAGE_SIZE, IMAGE_SIZE, 3)
