"""YASA baseline: channel lookup, staging of a short synthetic file, and the real night."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eegvlm_desktop.core.hypnogram.hypnogram import Hypnogram
from eegvlm_desktop.core.recording.recording import Recording, read_recording
from eegvlm_desktop.core.stages import STAGES
from eegvlm_desktop.core.staging.yasa_baseline import (compare_with_yasa, resolve_channel,
                                                       yasa_stages)
from tests.conftest import write_edf


@pytest.fixture(scope="module")
def ten_min(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    """A 10-minute (20-epoch) 4-channel 100-Hz recording: YASA needs at least 5 minutes."""
    path = write_edf(tmp_path_factory.mktemp("yasa") / "ten.edf", duration_s=600.0)
    return read_recording(path)


@pytest.mark.parametrize("name", ["EEG Fpz-Cz", "Fpz-Cz", "fpz-cz", "fpz cz", " EEG FPZ-CZ "])
def test_resolve_channel_accepts_display_and_mne_names(ten_min: Recording, name: str) -> None:
    assert resolve_channel(ten_min, name) == ten_min.mne_names[0]


def test_resolve_channel_error_lists_channels(ten_min: Recording) -> None:
    with pytest.raises(ValueError) as err:
        resolve_channel(ten_min, "C3-M2", "eog_name")
    msg = str(err.value)
    assert "'eog_name'" in msg and "'C3-M2'" in msg and "'EEG Fpz-Cz'" in msg


def test_yasa_stages_synthetic(ten_min: Recording) -> None:
    labels, proba = yasa_stages(ten_min, "EEG Fpz-Cz", eog_name="EOG horizontal",
                                emg_name="EMG submental")
    assert len(labels) == 20 and set(labels) <= set(STAGES)
    assert proba.shape == (20, 5) and np.allclose(proba.sum(axis=1), 1.0)
    # The label is the most probable stage, so the columns are in STAGES order.
    assert labels == [STAGES[i] for i in proba.argmax(axis=1)]
    part, _ = yasa_stages(ten_min, "Fpz-Cz", start_s=60.0, n_epochs=10)
    assert len(part) == 10


@pytest.mark.parametrize("kwargs, words", [
    ({"n_epochs": 9}, ["'n_epochs'", "10..20", "9"]),
    ({"n_epochs": 21}, ["'n_epochs'", "21"]),
    ({"start_s": 600.0}, ["'start_s'", "600"]),
    ({"start_s": 400.0}, ["'n_epochs'", "10..6"]),
])
def test_yasa_stages_span_errors(ten_min: Recording, kwargs: dict, words: list[str]) -> None:
    with pytest.raises(ValueError) as err:
        yasa_stages(ten_min, "EEG Fpz-Cz", **kwargs)
    for w in words:
        assert w in str(err.value)


def test_compare_with_yasa_synthetic(ten_min: Recording) -> None:
    hyp = Hypnogram(["W"] * 12 + ["N2"] * 8)
    out = compare_with_yasa(ten_min, hyp, np.arange(2, 20), span="recording")
    assert out["n_epochs"] == 18 and out["staged_epochs"] == [0, 20]
    assert out["channels"] == {"eeg": "Fpz-Cz", "eog": None, "emg": None}
    assert out["runtime_s"] > 0 and 0.0 <= out["accuracy"] <= 1.0
    with pytest.raises(ValueError, match="'span'.*'window', 'recording'.*'night'"):
        compare_with_yasa(ten_min, hyp, np.arange(20), span="night")
    with pytest.raises(ValueError, match="'indices'.*0..19.*0..24"):
        compare_with_yasa(ten_min, Hypnogram(["W"] * 25), np.arange(25))
    # Scoring a few epochs still stages the whole span, so they get the same labels.
    whole = compare_with_yasa(ten_min, hyp, np.arange(20))
    part = compare_with_yasa(ten_min, hyp, np.arange(20), score=[5, 6, 7])
    assert part["n_epochs"] == 3 and part["staged_epochs"] == whole["staged_epochs"] == [0, 20]
    cm = np.asarray(whole["confusion"])
    assert np.asarray(part["confusion"]).sum() == 3 and cm.sum() == 20
    with pytest.raises(ValueError, match="'score'"):
        compare_with_yasa(ten_min, hyp, np.arange(5, 20), score=[2])


@pytest.mark.slow
def test_yasa_reproduces_reference_on_sc4001(sleep_edf_psg: Path, sleep_edf_hyp: Path) -> None:
    from eegvlm_desktop.core.hypnogram.read import read_hypnogram
    from eegvlm_desktop.core.staging.protocol import standard_window

    rec = read_recording(sleep_edf_psg)
    hyp = read_hypnogram(sleep_edf_hyp, recording_start=rec.meas_date,
                         recording_duration=rec.duration).hypnogram
    window = standard_window(hyp)
    assert len(window) == 841
    out = compare_with_yasa(rec, hyp, window, eeg_name="EEG Fpz-Cz")
    # Design notes: YASA 0.8.1, Fpz-Cz only, 841 epochs: 0.854 / 0.809 / 0.809.
    assert out["n_epochs"] == 841
    assert out["accuracy"] == pytest.approx(0.854, abs=0.02)
    assert out["macro_f1"] == pytest.approx(0.809, abs=0.02)
    assert out["kappa"] == pytest.approx(0.809, abs=0.02)


def test_yasa_stages_retypes_misc_channels(tmp_path: Path) -> None:
    """A FIF whose EOG is typed 'misc' still reaches YASA as EOG (so it is scaled to µV)."""
    import mne

    rng = np.random.default_rng(1)
    t = np.arange(60_000) / 100.0
    data = rng.normal(0, 20e-6, (2, t.size)) + 30e-6 * np.sin(2 * np.pi * 10 * t)
    info = mne.create_info(["C4-M1", "LOC"], 100.0, ["eeg", "misc"])
    mne.io.RawArray(data, info, verbose="error").save(tmp_path / "x_raw.fif", verbose="error")
    rec = read_recording(tmp_path / "x_raw.fif")
    labels, proba = yasa_stages(rec, "C4-M1", eog_name="LOC")
    assert len(labels) == 20 and proba.shape == (20, 5)
    assert rec.raw.get_channel_types() == ["eeg", "misc"]  # the recording is untouched
