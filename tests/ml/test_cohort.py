"""Cohort evidence: RobustSleepNet and YASA's classifier from the model folder, no pickle."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from eegvlm_desktop.core.recording.montage import pick_roles
from eegvlm_desktop.core.recording.recording import read_recording
from eegvlm_desktop.ml.cohort import CohortStager
from tests.conftest import write_edf

FOLDER = Path(__file__).resolve().parents[2] / "model_weights" / "default"
pytestmark = pytest.mark.skipif(not CohortStager.available(FOLDER),
                                reason="the shipped model folder has no cohort/ files")


@pytest.fixture(scope="module")
def stager() -> CohortStager:
    return CohortStager(FOLDER)


def _open(path: Path):
    rec = read_recording(path)
    return rec, pick_roles(rec.ch_names, rec.ch_types)


def test_whole_recording_both_sources(stager, tmp_path) -> None:
    rec, roles = _open(write_edf(tmp_path / "n.edf", duration_s=600.0))
    ev = stager.evidence(rec, roles)
    assert set(ev.log_proba) == {"rsn", "yasa"}
    for lp in ev.log_proba.values():
        assert lp.shape == (20, 5)
        np.testing.assert_allclose(np.exp(lp).sum(1), 1.0, atol=0.02)
    assert ev.channels["yasa"] == ["EEG Fpz-Cz"]
    assert "EOG horizontal" in ev.channels["rsn"]


def test_text_model_answers_as_yasa_itself(stager, tmp_path) -> None:
    """The LightGBM text copy gives YASA 0.8.1's own probabilities (its pickled original)."""
    import mne
    import yasa

    rec, roles = _open(write_edf(tmp_path / "n.edf", duration_s=600.0, seed=3))
    ev = stager.evidence(rec, roles)
    x = rec.get_data([roles["eeg_central"]]) * 1e-6
    raw = mne.io.RawArray(x, mne.create_info(["EEG"], rec.sfreq, ["eeg"]), verbose="error")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's note on YASA's pickle, the library's own
        proba = yasa.SleepStaging(raw, eeg_name="EEG").predict().proba
    ref = proba[["WAKE", "N1", "N2", "N3", "REM"]].to_numpy()
    np.testing.assert_allclose(np.exp(ev.log_proba["yasa"]), np.clip(ref, 1e-6, 1), atol=1e-9)


def test_short_and_low_rate_recordings_say_why(stager, tmp_path) -> None:
    rec, roles = _open(write_edf(tmp_path / "short.edf", duration_s=120.0))
    ev = stager.evidence(rec, roles)
    assert "rsn" in ev.log_proba and ev.log_proba["rsn"].shape == (4, 5)
    assert "yasa" not in ev.log_proba
    assert any("5 minutes" in n for n in ev.notes)
    rec, roles = _open(write_edf(tmp_path / "fifty.edf", duration_s=600.0, sfreq=50.0,
                                 ch_names=("EEG C3-A1",)))
    ev = stager.evidence(rec, roles)
    assert set(ev.log_proba) == {"rsn", "yasa"}
    assert any("resampled from 50 Hz" in n for n in ev.notes)


def test_excluded_channels_and_cancel(stager, tmp_path) -> None:
    rec, roles = _open(write_edf(tmp_path / "n.edf", duration_s=600.0))
    ev = stager.evidence(rec, roles, should_stop=lambda: True)
    assert set(ev.log_proba) == {"rsn"}  # stopped before YASA
    eeg = {roles["eeg_frontal"], roles["eeg_central"], roles["eeg_occipital"], roles["eog"]}
    ev = stager.evidence(rec, roles, exclude=eeg)
    assert not ev.log_proba and any("no usable" in n for n in ev.notes)


def test_a_failing_stager_is_left_out_with_a_note(stager, tmp_path, monkeypatch):
    rec, roles = _open(write_edf(tmp_path / "n.edf", duration_s=600.0))

    def broken(*_a, **_k):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(stager, "_yasa", broken)
    ev = stager.evidence(rec, roles)
    assert set(ev.log_proba) == {"rsn"} and any("YASA left out: boom" in n for n in ev.notes)
