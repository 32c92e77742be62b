"""The signal check on open: flat, tiny-scale, rangeless and clipped channels are named."""
from __future__ import annotations

import mne
import numpy as np
import pytest

from eegvlm_desktop.core.recording.quality import check_signal_quality, recording_notes
from eegvlm_desktop.core.recording.recording import read_recording
from tests.conftest import EXAMPLE_PSG, write_broken_edf


def _edf(path, data):
    names = ["EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal", "EMG submental"]
    raw = mne.io.RawArray(data, mne.create_info(names, 100.0, "eeg"), verbose="error")
    mne.export.export_raw(path, raw, fmt="edf", overwrite=True, verbose="error")
    return path


def _noise():
    return np.random.default_rng(0).normal(0, 20e-6, (4, 60000))


def test_clean_recordings_have_no_issues(tiny_edf):
    assert check_signal_quality(read_recording(tiny_edf)) == []


@pytest.mark.skipif(not EXAMPLE_PSG.exists(), reason="example recording not shipped")
def test_the_shipped_sleep_edf_example_has_no_issues():
    assert check_signal_quality(read_recording(EXAMPLE_PSG)) == []


def test_flat_eeg_is_unusable(tmp_path):
    issues = check_signal_quality(read_recording(write_broken_edf(tmp_path / "f.edf", "flat")))
    assert [(q.channel, q.kind, q.unusable) for q in issues] == [
        ("EEG Fpz-Cz", "flat", True), ("EEG Pz-Oz", "flat", True)]
    assert "'EEG Fpz-Cz' (EEG) is flat" in str(issues[0]) and "whole recording" in str(issues[0])


def test_eeg_stored_in_volts_as_microvolts_is_unusable(tmp_path):
    issues = check_signal_quality(read_recording(write_broken_edf(tmp_path / "t.edf", "tiny")))
    assert {q.kind for q in issues} == {"tiny"} and len(issues) == 4
    assert "RMS amplitude is 2e-05 µV" in str(issues[0]) and "volts" in str(issues[0])


def test_physical_min_equal_to_max_is_unusable(tmp_path):
    rec = read_recording(write_broken_edf(tmp_path / "r.edf", "no_range"))
    issues = check_signal_quality(rec)
    assert [(q.index, q.kind) for q in issues] == [(0, "no_range"), (1, "no_range")]
    assert "same physical minimum and maximum" in str(issues[0])
    assert rec.physical_range(0) == (0.0, 0.0) and rec.physical_range(2)[0] < 0
    assert any("Physical range is not defined" in n for n in rec.notes)  # MNE's own note


def test_clipping_warns_and_heavy_clipping_is_unusable(tmp_path):
    data = _noise()
    data[0] = np.clip(data[0] * 5, -50e-6, 50e-6)  # most samples cut off
    data[2] = np.clip(data[2], -45e-6, 45e-6)  # ~2.5 % cut off: a warning only
    issues = check_signal_quality(read_recording(_edf(tmp_path / "clip.edf", data)))
    assert [(q.index, q.kind, q.unusable) for q in issues] == [(0, "clipped", True),
                                                             (2, "clipped", False)]
    assert "% of its samples" in str(issues[1]) and "-45 or 45 µV" in str(issues[1])


def test_long_recordings_are_sampled_not_read_whole(tmp_path, monkeypatch):
    from eegvlm_desktop.core.recording import quality

    rec = read_recording(_edf(tmp_path / "long.edf", np.tile(_noise(), 8)))  # 80 min
    asked = []
    real = type(rec).get_data
    monkeypatch.setattr(type(rec), "get_data",
                        lambda self, picks, a, b: asked.append(b - a) or real(self, picks, a, b))
    assert check_signal_quality(rec) == []
    # The sample's windows, each read twice (extremes first, then the clipping count), one
    # at a time: never the whole file.
    assert len(asked) == 2 * quality.N_WINDOWS and set(asked) == {3000}


def test_recording_notes_are_unit_fixes_reader_notes_then_signal_problems(tmp_path):
    rec = read_recording(write_broken_edf(tmp_path / "r.edf", "no_range"))
    rec.unit_notes.append("Channel 'X': read as µV.")
    notes = recording_notes(rec)
    assert notes[0] == "Channel 'X': read as µV."
    assert "Physical range is not defined" in notes[1]  # MNE's
    assert "same physical minimum and maximum" in notes[2] and len(notes) == 4
