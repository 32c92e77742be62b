"""Opening recordings: lazy reads, names/types/rates/units, µV scaling, and bad input."""
from __future__ import annotations

import datetime as dt
import os
import pathlib
import time
from pathlib import Path

import numpy as np
import pytest

from eegvlm_desktop.core.errors import RecordingError
from eegvlm_desktop.core.recording.recording import infer_type, read_recording

edfio = pytest.importorskip("edfio")

EXAMPLE = Path(__file__).resolve().parents[3] / "resources" / "example"
EXAMPLE_PSG = EXAMPLE / "SC4001-example-PSG.edf"
EXAMPLE_HYP = EXAMPLE / "SC4001-example-Hypnogram.edf"


def write_edfio(path: Path, signals: list[tuple[str, float, np.ndarray, str]],
                record_s: float = 1.0, patient: object | None = None) -> Path:
    """Write an EDF with edfio: (label, rate, physical samples, unit) per signal."""
    sigs = [edfio.EdfSignal(x, rate, label=label, physical_dimension=unit,
                            physical_range=(float(x.min()) - 1, float(x.max()) + 1))
            for label, rate, x, unit in signals]
    edf = edfio.Edf(sigs, data_record_duration=record_s, starttime=dt.time(22, 30),
                    patient=patient, recording=edfio.Recording(startdate=dt.date(2020, 1, 2)))
    edf.write(path)
    return path


def expect_error(path: Path, *words: str) -> str:
    """Open ``path``, expect a RecordingError naming the file and every word; return it."""
    with pytest.raises(RecordingError) as info:
        read_recording(path)
    msg = str(info.value)
    assert path.name in msg, msg
    for word in words:
        assert word.lower() in msg.lower(), f"{word!r} not in: {msg}"
    assert "Traceback" not in msg and not msg.startswith(("ValueError", "OSError"))
    return msg


# ---- good files ----------------------------------------------------------------------------
def test_tiny_edf_opens_lazily_with_names_types_units(tiny_edf: Path) -> None:
    rec = read_recording(tiny_edf)
    assert rec.raw.preload is False
    assert rec.path == tiny_edf
    assert rec.ch_names == ["EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal", "EMG submental"]
    assert rec.ch_types == ["eeg", "eeg", "eog", "emg"]
    assert rec.units == ["µV"] * 4
    assert rec.sfreq == 100.0 and rec.orig_sfreqs == [100.0] * 4
    assert rec.n_times == 30_000 and rec.duration == 300.0
    assert rec.n_epochs() == 10 and rec.n_epochs(20.0) == 15 and rec.n_epochs(7.0) == 42
    assert rec.eeg_indices == [0, 1]
    assert rec.meas_date == dt.datetime.fromtimestamp(1_000_000_000, dt.timezone.utc)
    assert rec.unit_notes == []
    text = rec.summary()
    assert "EEG Fpz-Cz" in text and "100 Hz" in text and "µV" in text and "300 s" in text


def test_tiny_edf_samples_are_the_written_signal_in_microvolts(tiny_edf: Path) -> None:
    # conftest.write_edf's signal, regenerated from the same seed (volts)
    rng = np.random.default_rng(0)
    n = 30_000
    truth = rng.normal(0, 20e-6, (4, n))
    truth[0] += 30e-6 * np.sin(2 * np.pi * 10 * np.arange(n) / 100.0)
    rec = read_recording(tiny_edf)
    got = rec.get_data(None, 1234, 4321)
    assert got.dtype == np.float64 and got.shape == (4, 3087)
    # 16-bit quantisation of ~±100 µV is ~0.003 µV
    np.testing.assert_allclose(got, truth[:, 1234:4321] * 1e6, atol=0.02)
    np.testing.assert_allclose(rec.get_data([2, 0], 0, 10), truth[[2, 0], :10] * 1e6, atol=0.02)


def test_get_data_clips_and_validates(tiny_edf: Path) -> None:
    rec = read_recording(tiny_edf)
    assert rec.get_data([0], -50, 100).shape == (1, 100)
    assert rec.get_data([0, 1], 29_900, 99_999).shape == (2, 100)
    assert rec.get_data([0], 500, 400).shape == (1, 0)
    with pytest.raises(ValueError, match="'picks'.*0..3.*\\[7\\]"):
        rec.get_data([0, 7], 0, 10)
    with pytest.raises(ValueError, match="epoch_length"):
        rec.n_epochs(0)


def test_mixed_rates_time_axis_and_low_rate_channel(tmp_path: Path) -> None:
    t = np.arange(12_000) / 100.0
    eeg = 40 * np.sin(2 * np.pi * 1.5 * t)
    emg = 10.0 + np.arange(120.0)  # a 1-Hz ramp: linear interpolation must reproduce it
    path = write_edfio(tmp_path / "mixed.edf", [("EEG C3-M2", 100, eeg, "uV"),
                                                ("EMG chin", 1, emg, "uV")])
    rec = read_recording(path)
    assert rec.orig_sfreqs == [100.0, 1.0] and rec.sfreq == 100.0
    assert rec.n_times == 12_000 and rec.duration == 120.0 and rec.n_epochs() == 4
    assert rec.ch_types == ["eeg", "emg"]
    # A window that does not start on a data-record boundary (MNE's lazy read gives zeros).
    data = rec.get_data([0, 1], 150, 450)
    np.testing.assert_allclose(data[0], eeg[150:450], atol=0.05)
    np.testing.assert_allclose(data[1], 10.0 + np.arange(150, 450) / 100.0, atol=0.01)
    assert "1 Hz" in rec.summary()


def test_bdf_24_bit_samples(tmp_path: Path) -> None:
    t = np.arange(2560) / 256.0
    eeg = 80 * np.sin(2 * np.pi * 3 * t) - 40  # negative values exercise the sign bit
    resp = 500 * np.cos(2 * np.pi * 0.25 * np.arange(320) / 32.0)
    sigs = [edfio.BdfSignal(eeg, 256, label="EEG Oz", physical_dimension="uV",
                            physical_range=(-200, 200)),
            edfio.BdfSignal(resp, 32, label="Resp thorax", physical_dimension="mV",
                            physical_range=(-600, 600))]
    path = tmp_path / "night.bdf"
    edfio.Bdf(sigs, data_record_duration=1.0).write(path)
    rec = read_recording(path)
    assert rec.orig_sfreqs == [256.0, 32.0] and rec.ch_types == ["eeg", "resp"]
    assert rec.units == ["µV", "mV"]
    got = rec.get_data(None, 300, 2000)
    np.testing.assert_allclose(got[0], eeg[300:2000], atol=1e-3)
    ref = np.interp(np.arange(300, 2000) / 256.0, np.arange(320) / 32.0, resp)
    np.testing.assert_allclose(got[1], ref, atol=1e-3)


def test_upper_case_uv_unit_is_fixed_and_noted(tmp_path: Path) -> None:
    t = np.arange(3000) / 100.0
    eeg = 50 * np.sin(2 * np.pi * 10 * t)
    path = write_edfio(tmp_path / "dreams_like.edf", [("C3-A1", 100, eeg, "UV"),
                                                       ("EOG1-A1", 100, eeg / 2, "uV")])
    rec = read_recording(path)
    assert rec.ch_types == ["eeg", "eog"] and rec.units == ["µV", "µV"]
    np.testing.assert_allclose(rec.get_data([0], 0, 3000)[0], eeg, atol=0.05)
    assert len(rec.unit_notes) == 1
    assert "C3-A1" in rec.unit_notes[0] and "'UV'" in rec.unit_notes[0]
    # MNE's own reader was corrected too, so exports through rec.raw get volts.
    np.testing.assert_allclose(rec.raw.get_data(picks=[0])[0], eeg * 1e-6, atol=1e-7)


def test_microvolt_numbers_labelled_volts_are_rescaled_by_amplitude(tmp_path: Path) -> None:
    eeg = np.random.default_rng(3).normal(0, 30, 3000)  # µV-sized numbers, header says V
    path = write_edfio(tmp_path / "volts.edf", [("EEG Cz", 100, eeg, "V")])
    rec = read_recording(path)
    got = rec.get_data([0], 0, 3000)[0]
    np.testing.assert_allclose(got, eeg, atol=0.05)
    assert any("EEG Cz" in n and "amplitude" in n for n in rec.unit_notes)
    np.testing.assert_allclose(rec.raw.get_data(picks=[0])[0], eeg * 1e-6, atol=1e-7)


def test_fif_goes_through_mne_with_its_own_types(tmp_path: Path) -> None:
    import mne

    rng = np.random.default_rng(8)
    volts = rng.normal(0, 20e-6, (3, 2000))
    volts[2] = 30 + rng.normal(0, 20, 2000)  # µV numbers stored as volts on an EEG channel
    info = mne.create_info(["E1", "ECG", "Cz"], 200.0, ["eeg", "ecg", "eeg"])
    raw = mne.io.RawArray(volts, info, verbose="error")
    path = tmp_path / "night_raw.fif"
    raw.save(path, verbose="error")
    rec = read_recording(path)
    assert rec.ch_types == ["eeg", "ecg", "eeg"]  # FIF types kept: EGI-style 'E1' is EEG
    assert rec.units == ["µV"] * 3 and rec.orig_sfreqs == [200.0] * 3
    got = rec.get_data(None, 100, 1100)
    np.testing.assert_allclose(got[:2], volts[:2, 100:1100] * 1e6, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(got[2], volts[2, 100:1100], rtol=1e-5)
    assert len(rec.unit_notes) == 1 and "'Cz'" in rec.unit_notes[0]
    assert "night_raw.fif" in rec.summary() and "200 Hz" in rec.summary()


def test_patient_info_kept_apart(tmp_path: Path) -> None:
    x = np.random.default_rng(1).normal(0, 20, 3000)
    patient = edfio.Patient(code="MCH-0234567", sex="F", birthdate=dt.date(1951, 5, 2),
                            name="Jane_Doe")
    rec = read_recording(write_edfio(tmp_path / "p.edf", [("EEG Fz", 100, x, "uV")],
                                     patient=patient))
    assert rec.patient_info["name"] == "Jane Doe"
    assert rec.patient_info["birthdate"] == "02-MAY-1951"
    assert rec.patient_info["patient_code"] == "MCH-0234567"
    assert "Jane" not in rec.summary()


@pytest.mark.parametrize(("name", "mne_type", "expected"), [
    ("Event marker", "eeg", "stim"), ("Resp oro-nasal", "eeg", "resp"),
    ("Temp rectal", "eeg", "temp"), ("chin", "eeg", "emg"), ("LOC", "eeg", "eog"),
    ("E2-M1", "eeg", "eog"), ("EKG", "eeg", "ecg"), ("SaO2", "eeg", "misc"),
    ("C3-M2", "eeg", "eeg"), ("EEG Fpz-Cz", "eeg", "eeg"), ("x", "temperature", "temp"),
    ("E10", "eeg", "eeg"),
])
def test_infer_type(name: str, mne_type: str, expected: str) -> None:
    assert infer_type(name, mne_type) == expected


# ---- bad input -----------------------------------------------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    expect_error(tmp_path / "nowhere.edf", "does not exist")


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "night.edf"
    folder.mkdir()
    expect_error(folder, "folder")


def test_unreadable_file(tiny_edf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.name == "posix" and os.geteuid() != 0:
        tiny_edf.chmod(0)
    else:  # root reads anything: make opening this one file fail as a chmod would
        real_open = pathlib.Path.open

        def deny(self: Path, *args: object, **kwargs: object) -> object:
            if self == tiny_edf:
                raise PermissionError(13, "Permission denied", str(self))
            return real_open(self, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, "open", deny)
    expect_error(tiny_edf, "permission")


def test_unknown_extension_lists_supported(tmp_path: Path) -> None:
    path = tmp_path / "night.xyz"
    path.write_text("hello")
    expect_error(path, "'.xyz'", "Supported formats", ".edf", ".vhdr", ".fif")


@pytest.mark.parametrize(("content", "word"), [
    (b"time,value\n0,1\n1,2\n" * 20, "text file"),
    (b"\x89PNG\r\n\x1a\n" + bytes(300), "PNG"),
])
def test_other_file_renamed_to_edf(tmp_path: Path, content: bytes, word: str) -> None:
    path = tmp_path / "renamed.edf"
    path.write_bytes(content)
    expect_error(path, "not an EDF file", word)


def test_truncated_edf_names_complete_records(tiny_edf: Path) -> None:
    data = tiny_edf.read_bytes()
    header = int(data[184:192])
    n_records = int(data[236:244])
    rec_bytes = (len(data) - header) // n_records
    tiny_edf.write_bytes(data[:header + 7 * rec_bytes + rec_bytes // 2])
    expect_error(tiny_edf, "truncated", f"{n_records} data records", "7 complete records")


@pytest.mark.parametrize(("start", "stop", "field"), [
    (236, 244, "number of data records"),
    (244, 252, "data record duration"),
    (184, 192, "header size"),
])
def test_corrupt_header_numbers(tiny_edf: Path, start: int, stop: int, field: str) -> None:
    data = bytearray(tiny_edf.read_bytes())
    data[start:stop] = b"#&*?!x~ "
    tiny_edf.write_bytes(bytes(data))
    expect_error(tiny_edf, "corrupt", field, "#&*?!x~")


def test_corrupt_signal_header(tiny_edf: Path) -> None:
    data = bytearray(tiny_edf.read_bytes())
    ns = int(data[252:256])
    # samples-per-record field of signal 2 (after label..prefiltering = 216 bytes per signal)
    pos = 256 + ns * 216 + 8
    data[pos:pos + 8] = b"garbage "
    tiny_edf.write_bytes(bytes(data))
    expect_error(tiny_edf, "corrupt", "samples per record", "garbage")


def test_no_eeg_channel_lists_channels(tmp_path: Path) -> None:
    x = np.random.default_rng(2).normal(0, 1, 1000)
    path = write_edfio(tmp_path / "cardio.edf", [("ECG II", 100, x, "uV"),
                                                 ("Resp chest", 100, x, "")])
    expect_error(path, "no EEG channel", "ECG II (ecg)", "Resp chest (resp)")


def test_zero_length_recording(tiny_edf: Path) -> None:
    data = bytearray(tiny_edf.read_bytes())
    header = int(data[184:192])
    data[236:244] = b"0       "
    tiny_edf.write_bytes(bytes(data[:header]))
    expect_error(tiny_edf, "no samples")


def test_annotation_only_edf_points_to_hypnogram_import(sleep_edf_hyp: Path) -> None:
    expect_error(sleep_edf_hyp, "only annotations", "hypnogram")


def test_other_reader_failures_are_wrapped(tmp_path: Path) -> None:
    path = tmp_path / "broken.vhdr"
    path.write_text("this is not a BrainVision header\n")
    expect_error(path, "BrainVision", "reader failed")


# ---- real data (skip when ../shared/data or the example is absent) ------------------------
def test_real_night_opens_fast(sleep_edf_psg: Path) -> None:
    t0 = time.perf_counter()
    rec = read_recording(sleep_edf_psg)
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0, f"opening took {elapsed:.2f} s"
    assert len(rec.ch_names) == 7 and rec.ch_names[0] == "EEG Fpz-Cz"
    assert rec.ch_types == ["eeg", "eeg", "eog", "resp", "emg", "temp", "stim"]
    assert rec.orig_sfreqs == [100.0] * 3 + [1.0] * 4
    assert rec.units[:3] == ["µV"] * 3 and rec.units[5] == "DegC"
    assert rec.duration == 79_500.0 and rec.n_epochs() == 2650
    assert rec.meas_date == dt.datetime(1989, 4, 24, 16, 13, tzinfo=dt.timezone.utc)
    # 100-Hz channels equal MNE's own read; the 1-Hz EMG envelope is not zero mid-record.
    t1 = time.perf_counter()
    page = rec.get_data(None, 3_061_550, 3_064_550)
    assert time.perf_counter() - t1 < 0.05
    ref = rec.raw.get_data(picks=[0, 1, 2], start=3_061_550, stop=3_064_550) * 1e6
    np.testing.assert_allclose(page[:3], ref, atol=1e-9)
    assert np.all(page[4] > 0)


def test_example_files() -> None:
    if not (EXAMPLE_PSG.exists() and EXAMPLE_HYP.exists()):
        pytest.skip("resources/example has not been made (python scripts/make_example.py)")
    rec = read_recording(EXAMPLE_PSG)
    assert rec.ch_names == ["EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal", "EMG submental"]
    assert rec.orig_sfreqs == [100.0, 100.0, 100.0, 1.0]
    assert rec.duration % 30 == 0 and rec.n_epochs() * 30 == rec.duration
    import mne

    ann = mne.read_annotations(EXAMPLE_HYP)
    assert ann.onset[0] == 0 and ann.onset[-1] + ann.duration[-1] == rec.duration
