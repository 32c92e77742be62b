"""Hypnogram import/export: every format read from hand-written files, every writer
round-tripped, and the fit checks the import dialog relies on."""
from __future__ import annotations

import collections
import json
from datetime import datetime, time, timezone
from pathlib import Path

import numpy as np
import pytest

from eegvlm_desktop.core.errors import HypnogramError, HypnogramMismatchError
from eegvlm_desktop.core.hypnogram.hypnogram import Hypnogram
from eegvlm_desktop.core.hypnogram.fit import check_fit, fit_to_recording
from eegvlm_desktop.core.hypnogram.read import ImportResult, read_hypnogram
from eegvlm_desktop.core.hypnogram.write import write_hypnogram

DREAMS_HYP = Path(__file__).resolve().parents[4] / "shared" / "data" / "dreams-spindles" / \
    "Hypnogram_excerpt3.txt"


def edf_annotations(path: Path, annotations: list[tuple[float, float, str]],
                    start: datetime | None = None) -> Path:
    """An EDF+C holding only an annotation signal, like Sleep-EDF's hypnogram files."""
    from edfio import Edf, EdfAnnotation, Recording

    kwargs = {}
    if start is not None:
        kwargs = {"starttime": start.time(), "recording": Recording(startdate=start.date())}
    Edf(signals=[], annotations=[EdfAnnotation(*a) for a in annotations], **kwargs).write(path)
    return path


def stages(result: ImportResult) -> list[str]:
    return [str(s) for s in result.hypnogram.stages]


# ------------------------------------------------------------------------------ EDF
def test_edf_rk_labels_mapped_gaps_unscored_and_non_stage_annotations_ignored(tmp_path):
    path = edf_annotations(tmp_path / "h.edf", [
        (0, 60, "Sleep stage W"), (60, 30, "Sleep stage 1"), (90, 30, "Sleep stage 3"),
        (120, 60, "Sleep stage 4"), (180, 30, "Movement time"),
        (240, 30, "Sleep stage R"), (270, 30, "Sleep stage ?"), (10, 0, "Lights off"),
    ])
    res = read_hypnogram(path)
    assert res.fmt == "edf"
    # 60-s and 90-s annotations expand; the 210-240 s gap becomes unscored.
    assert stages(res) == ["W", "W", "N1", "N3", "N3", "N3", "UNS", "UNS", "R", "UNS"]
    assert res.hypnogram.start == 0.0 and res.hypnogram.epoch_length == 30.0
    m = dict(res.mapping)
    assert m["Sleep stage 3"] == "N3" and m["Sleep stage 4"] == "N3"
    assert m["Movement time"] == "UNS" and m["Sleep stage ?"] == "UNS"
    assert "Lights off" not in m
    assert any("Lights off" in n and "ignored" in n for n in res.notes)
    assert list(res.hypnogram.provenance[:2]) == ["import", "import"]
    assert res.hypnogram.provenance[6] == "none"


def test_edf_onsets_shift_to_recording_start(tmp_path):
    path = edf_annotations(tmp_path / "h.edf", [(0, 30, "Sleep stage W"),
                                                (30, 30, "Sleep stage 2")],
                           start=datetime(2020, 1, 2, 22, 1, 0))
    rec = datetime(2020, 1, 2, 22, 0, 0, tzinfo=timezone.utc)  # MNE's meas_date is UTC-aware
    res = read_hypnogram(path, recording_start=rec)
    assert res.hypnogram.start == 60.0
    assert any("60 s after" in n for n in res.notes)
    # Same start: no shift, no note.
    res = read_hypnogram(path, recording_start=datetime(2020, 1, 2, 22, 1, 0))
    assert res.hypnogram.start == 0.0 and not any("shifted" in n for n in res.notes)


def test_edf_detected_by_content_whatever_the_extension(tmp_path):
    path = edf_annotations(tmp_path / "h.edf", [(0, 30, "Sleep stage N2")])
    renamed = path.rename(tmp_path / "scoring.hyp")
    res = read_hypnogram(renamed)
    assert res.fmt == "edf" and stages(res) == ["N2"]


def test_trailing_unscored_past_recording_dropped_with_note_but_scored_kept(tmp_path):
    path = edf_annotations(tmp_path / "h.edf", [(0, 90, "Sleep stage W"),
                                                (90, 120, "Sleep stage ?")])
    res = read_hypnogram(path, recording_duration=120.0)
    assert stages(res) == ["W", "W", "W", "UNS"]
    assert "3 trailing unscored epochs past the end of the recording were dropped." in res.notes
    path = edf_annotations(tmp_path / "h2.edf", [(0, 90, "Sleep stage W"),
                                                 (90, 30, "Sleep stage 2")])
    res = read_hypnogram(path, recording_duration=60.0)
    assert res.hypnogram.n_epochs == 4 and res.notes == []  # scored extras: user's choice
    assert "2 of them are scored" in check_fit(res.hypnogram, 2)[0]


def test_real_sleep_edf_hypnogram(sleep_edf_hyp, sleep_edf_psg):
    import mne

    raw = mne.io.read_raw_edf(sleep_edf_psg, verbose="error")
    duration = raw.n_times / raw.info["sfreq"]
    res = read_hypnogram(sleep_edf_hyp, recording_start=raw.info["meas_date"],
                         recording_duration=duration)
    hyp = res.hypnogram
    assert hyp.n_epochs == 2650 and hyp.start == 0.0
    assert collections.Counter(map(str, hyp.stages)) == {
        "W": 1997, "N1": 58, "N2": 250, "N3": 220, "R": 125}
    assert "230 trailing unscored epochs past the end of the recording were dropped." in res.notes
    assert ("Sleep stage 4", "N3") in res.mapping and ("Sleep stage 3", "N3") in res.mapping
    assert check_fit(hyp, 2650) == []
    # Without the recording's length nothing is dropped, and check_fit says why it is long.
    long = read_hypnogram(sleep_edf_hyp).hypnogram
    assert long.n_epochs == 2880
    (problem,) = check_fit(long, 2650)
    assert "230 more epoch(s)" in problem and "all of them are unscored" in problem


# ------------------------------------------------------------------------------ CSV / TSV
def test_csv_events_case_insensitive_header_and_sniffed_semicolon(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("Onset;Duration;Description\n0;60;Sleep stage W\n60;30;N2\n120;30;REM\n")
    res = read_hypnogram(path)
    assert res.fmt == "csv"
    assert stages(res) == ["W", "W", "N2", "UNS", "R"]


def test_bids_tsv_trial_type_with_non_stage_rows(tmp_path):
    path = tmp_path / "sub-01_task-sleep_events.tsv"
    path.write_text("onset\tduration\ttrial_type\tvalue\n"
                    "0\t30\tsleep_stage_W\t0\n5\tn/a\tlights_off\tn/a\n"
                    "30\t30\tsleep_stage_N3\t3\n")
    res = read_hypnogram(path)
    assert res.fmt == "tsv" and stages(res) == ["W", "N3"]
    assert any("lights_off" in n for n in res.notes)


def test_single_stage_column_one_row_per_epoch(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("stage\nW\nN1\nN2\nS4\n?\n")
    assert stages(read_hypnogram(path)) == ["W", "N1", "N2", "N3", "UNS"]
    path.write_text("stage\nW\nLights off\nN2\n")  # would shift every later epoch
    with pytest.raises(HypnogramError, match="'Lights off'"):
        read_hypnogram(path)


def test_csv_without_stage_column_or_with_bad_number(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("time,value\n0,1\n")
    with pytest.raises(HypnogramError, match="h.csv.*no stage column.*'time'"):
        read_hypnogram(path)
    path.write_text("onset,duration,stage\nzero,30,W\n")
    with pytest.raises(HypnogramError, match="line 2: onset 'zero' is not a number"):
        read_hypnogram(path)


# ------------------------------------------------------------------------------ text
def test_yasa_integer_text_uses_yasa_codes_and_skips_header(tmp_path):
    path = tmp_path / "hypno.txt"
    path.write_text("[Hypnogram]\n0\n1\n2\n3\n4\n-1\n-2\n")
    res = read_hypnogram(path)
    assert res.fmt == "yasa-txt"
    # 4 is REM in YASA's convention (not R&K stage 4).
    assert stages(res) == ["W", "N1", "N2", "N3", "R", "ART", "UNS"]
    assert ("4", "R") in res.mapping
    np.savetxt(path, [0, 2, 4])  # YASA users often save with numpy: '4.000000e+00'
    assert stages(read_hypnogram(path)) == ["W", "N2", "R"]
    path.write_text("0\n2\n7\n")
    with pytest.raises(HypnogramError, match="hypno.txt.*codes 7"):
        read_hypnogram(path)


def test_text_one_label_per_line(tmp_path):
    path = tmp_path / "hypno.txt"
    path.write_text("W\nN1\nN2\nN3\nR\n")
    assert stages(read_hypnogram(path)) == ["W", "N1", "N2", "N3", "R"]


def test_five_second_codes_raise_mismatch_naming_both_epoch_lengths(tmp_path):
    path = tmp_path / "Hypnogram_excerpt.txt"
    path.write_text("[Hypnogram]\n" + "2\n" * 360)
    with pytest.raises(HypnogramMismatchError, match=r"5 s epochs \(360 epochs for a 1800 s "
                                                     r"recording\), but 30 s epochs") as err:
        read_hypnogram(path, recording_duration=1800.0)
    assert err.value.problems == ["Epoch length in the file: 5 s; expected: 30 s."]


def test_real_dreams_hypnogram_is_refused_as_5_s_epochs():
    if not DREAMS_HYP.exists():
        pytest.skip("../shared/data/dreams-spindles is not present on this machine")
    with pytest.raises(HypnogramMismatchError, match="5 s epochs"):
        read_hypnogram(DREAMS_HYP, recording_duration=1800.0)


def test_durations_off_the_grid_raise_mismatch(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("onset,duration,stage\n0,5,W\n5,5,N1\n10,10,N2\n")
    with pytest.raises(HypnogramMismatchError, match="'h.csv' is scored in 5 s epochs, but 30 s"):
        read_hypnogram(path)


# ------------------------------------------------------------------------------ XML
NSRR = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<PSGAnnotation><SoftwareVersion>Compumedics</SoftwareVersion><EpochLength>30</EpochLength>
<ScoredEvents>
<ScoredEvent><EventType/><EventConcept>Recording Start Time</EventConcept><Start>0</Start>
<Duration>120.0</Duration><ClockTime>00.00.00 22.00.00</ClockTime></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Wake|0</EventConcept>
<Start>0.0</Start><Duration>30.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Stage 1 sleep|1</EventConcept>
<Start>30.0</Start><Duration>30.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Stage 4 sleep|4</EventConcept>
<Start>60.0</Start><Duration>60.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Arousals|Arousals</EventType><EventConcept>Arousal|Arousal ()</EventConcept>
<Start>70.0</Start><Duration>10.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>REM sleep|5</EventConcept>
<Start>120.0</Start><Duration>30.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Movement|6</EventConcept>
<Start>150.0</Start><Duration>30.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Unscored|9</EventConcept>
<Start>180.0</Start><Duration>30.0</Duration></ScoredEvent>
</ScoredEvents></PSGAnnotation>
"""

PROFUSION = """<?xml version="1.0" encoding="utf-8"?>
<CMPStudyConfig><EpochLength>{ep}</EpochLength>
<SleepStages><SleepStage>0</SleepStage><SleepStage>1</SleepStage><SleepStage>2</SleepStage>
<SleepStage>3</SleepStage><SleepStage>4</SleepStage><SleepStage>5</SleepStage>
<SleepStage>9</SleepStage></SleepStages></CMPStudyConfig>
"""


def test_nsrr_xml(tmp_path):
    path = tmp_path / "shhs1-200001-nsrr.xml"
    path.write_text(NSRR)
    res = read_hypnogram(path)
    assert res.fmt == "xml"
    assert stages(res) == ["W", "N1", "N3", "N3", "R", "UNS", "UNS"]
    assert ("Stage 4 sleep|4", "N3") in res.mapping and ("Movement|6", "UNS") in res.mapping


def test_profusion_xml_and_its_epoch_length(tmp_path):
    path = tmp_path / "profusion.xml"
    path.write_text(PROFUSION.format(ep=30))
    res = read_hypnogram(path)
    assert stages(res) == ["W", "N1", "N2", "N3", "N3", "R", "UNS"]
    path.write_text(PROFUSION.format(ep=20))
    with pytest.raises(HypnogramMismatchError, match="20 s epochs.*30 s epochs"):
        read_hypnogram(path)


def test_xml_with_entities_or_unknown_schema_is_refused(tmp_path):
    path = tmp_path / "evil.xml"
    path.write_text('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>')
    with pytest.raises(HypnogramError, match="evil.xml.*DTD"):
        read_hypnogram(path)
    path.write_text("<x><y/></x>")
    with pytest.raises(HypnogramError, match="neither an NSRR"):
        read_hypnogram(path)


# ------------------------------------------------------------------------------ errors
def test_overlapping_annotations_name_the_times(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("onset,duration,stage\n0,90,W\n60,30,N1\n")
    with pytest.raises(HypnogramError, match=r"overlapping.*'W' at 0:00:00 \(0 s\) to "
                                             r"0:01:30 \(90 s\) and 'N1' at 0:01:00 \(60 s\)"):
        read_hypnogram(path)


@pytest.mark.parametrize("name", ["h.edf", "h.csv", "h.txt", "h.xml", "h.json"])
def test_empty_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(HypnogramError, match=f"'{name}' is empty"):
        read_hypnogram(tmp_path / name)


def test_garbage_files(tmp_path):
    path = tmp_path / "h.edf"
    path.write_bytes(b"this is not an edf\x00\x01" * 50)
    with pytest.raises(HypnogramError, match="'h.edf'.*not an EDF file"):
        read_hypnogram(path)
    path = tmp_path / "h.bin"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(HypnogramError, match="'h.bin' is a binary file"):
        read_hypnogram(path)
    path = tmp_path / "notes.txt"
    path.write_text("Dear diary,\ntoday I slept well.\n")
    with pytest.raises(HypnogramError, match="'notes.txt' is not a hypnogram"):
        read_hypnogram(path)
    path = tmp_path / "h.json"
    path.write_text('{"stages": ')
    with pytest.raises(HypnogramError, match="'h.json' is not valid JSON"):
        read_hypnogram(path)
    with pytest.raises(HypnogramError, match="Could not open"):
        read_hypnogram(tmp_path / "missing.edf")


def test_no_stage_at_all(tmp_path):
    path = edf_annotations(tmp_path / "events.edf", [(0, 10, "Arousal"), (20, 0, "Lights on")])
    with pytest.raises(HypnogramError, match="'events.edf' contains no sleep stages"):
        read_hypnogram(path)
    path = tmp_path / "h.csv"
    path.write_text("onset,duration,stage\n0,30,?\n30,30,Movement time\n")
    with pytest.raises(HypnogramError, match="contains no sleep stages .only unscored"):
        read_hypnogram(path)


def test_bad_parameters_name_the_parameter(tmp_path):
    with pytest.raises(ValueError, match="'fmt' parameter.*'edf'.*got 'mat'"):
        read_hypnogram(tmp_path / "h.mat", fmt="mat")
    with pytest.raises(ValueError, match="'fmt' parameter.*got 'xlsx'"):
        write_hypnogram(Hypnogram(["W"]), tmp_path / "h.csv", fmt="xlsx")
    with pytest.raises(HypnogramError, match="Cannot tell the hypnogram format.*'h.dat'"):
        write_hypnogram(Hypnogram(["W"]), tmp_path / "h.dat")
    with pytest.raises(HypnogramError, match="no epochs"):
        write_hypnogram(Hypnogram([]), tmp_path / "h.csv")


# ------------------------------------------------------------------------------ writers
def sample_hypnogram() -> Hypnogram:
    h = Hypnogram(["W", "W", "N1", "N2", "N2", "N3", "R", "ART", "UNS", "N2"], scorer="Dr. A")
    h.set_stage(3, "N3", source="model")
    return h


@pytest.mark.parametrize("name, fmt, read_fmt", [
    ("h.csv", "csv", "csv"), ("h.tsv", "tsv", "tsv"), ("h.edf", "edf", "edf"),
    ("sub-01_events.tsv", "bids", "tsv"), ("h.json", "json", "json"),
    ("h.txt", "yasa-txt", "yasa-txt")])
def test_every_writer_round_trips(tmp_path, name, fmt, read_fmt):
    hyp = sample_hypnogram()
    out = write_hypnogram(hyp, tmp_path / name)
    assert out == tmp_path / name
    res = read_hypnogram(out)
    assert res.fmt == read_fmt
    assert stages(res) == [str(s) for s in hyp.stages]
    assert res.hypnogram.start == hyp.start and res.hypnogram.epoch_length == 30.0
    if fmt in ("csv", "tsv", "json"):  # the formats that store per-epoch provenance
        assert list(res.hypnogram.provenance) == list(hyp.provenance)
    # Atomic writing leaves no temp file behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [name] + (["sub-01_events.json"] if fmt == "bids" else []))


def test_json_round_trip_is_exact_with_proba_and_provenance(tmp_path):
    hyp = sample_hypnogram()
    hyp.set_proba([0, 1], np.array([[0.7, 0.1, 0.1, 0.05, 0.05], [0.2, 0.2, 0.2, 0.2, 0.2]]))
    path = write_hypnogram(hyp, tmp_path / "h.json", provenance={"model": "eegvlm-7b"})
    doc = json.loads(path.read_text())
    assert doc["format"] == "eegvlm-hypnogram" and doc["version"] == 1
    assert doc["provenance"] == {"model": "eegvlm-7b"} and doc["written"]
    assert read_hypnogram(path).hypnogram == hyp


def test_edf_written_in_aasm_labels_readable_by_mne_with_start_date(tmp_path):
    import mne

    meas = datetime(2021, 3, 4, 23, 15, 30, tzinfo=timezone.utc)
    path = write_hypnogram(sample_hypnogram(), tmp_path / "h.edf", meas_date=meas)
    ann = mne.read_annotations(path)
    assert list(ann.description[:3]) == ["Sleep stage W", "Sleep stage N1", "Sleep stage N3"]
    assert list(ann.onset[:3]) == [0.0, 60.0, 90.0] and list(ann.duration[:3]) == [60, 30, 30]
    assert "Sleep stage ?" in ann.description and "Sleep stage R" in ann.description
    import edfio

    edf = edfio.read_edf(path)
    assert (edf.startdate, edf.starttime) == (meas.date(), time(23, 15, 30))
    # Against a recording that started a minute earlier, the epochs move by 60 s.
    res = read_hypnogram(path, recording_start=datetime(2021, 3, 4, 23, 14, 30))
    assert res.hypnogram.start == 60.0


def test_bids_columns_and_sidecar(tmp_path):
    path = write_hypnogram(sample_hypnogram(), tmp_path / "sub-01_task-sleep_events.tsv",
                           provenance={"app": "eegvlm"})
    lines = path.read_text().splitlines()
    assert lines[0] == "onset\tduration\ttrial_type\tvalue"
    assert lines[7] == "180\t30\tsleep_stage_R\t4"
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["trial_type"]["Levels"]["sleep_stage_N3"] == "N3 sleep"
    assert side["Provenance"] == {"app": "eegvlm"}


def test_yasa_txt_pads_whole_epoch_offset_and_refuses_others(tmp_path):
    path = write_hypnogram(Hypnogram(["W", "N2"], start=60.0), tmp_path / "h.txt")
    assert path.read_text() == "-2\n-2\n0\n2\n"
    with pytest.raises(HypnogramError, match="starts at 15 s"):
        write_hypnogram(Hypnogram(["W"], start=15.0), tmp_path / "h.txt")


# ------------------------------------------------------------------------------ fitting
def test_check_fit_problems():
    assert check_fit(Hypnogram(["W"] * 10), 10) == []
    (p,) = check_fit(Hypnogram(["W"] * 10 + ["N2"] + ["UNS"]), 10)
    assert "2 more epoch(s)" in p and "1 of them is scored" in p
    (p,) = check_fit(Hypnogram(["W"] * 8), 10)
    assert "2 epoch(s) short" in p
    (p,) = check_fit(Hypnogram(["W"] * 60, epoch_length=5.0), 10)
    assert "5 s epochs" in p and "30 s epochs" in p
    (p,) = check_fit(Hypnogram(["W"] * 10, start=15.0), 10)
    assert "15 s" in p and "not a whole number" in p
    p1, p2 = check_fit(Hypnogram(["W"] * 10, start=60.0), 10)
    assert "2 epoch(s) (60 s) after the recording start" in p1 and "2 more epoch(s)" in p2
    (p,) = check_fit(Hypnogram(["UNS", "W"], start=-30.0), 1)
    assert "1 epoch(s) (30 s) before the recording" in p and "all of them are unscored" in p


def test_fit_to_recording_policies():
    hyp = Hypnogram(["W", "N2", "R", "UNS", "UNS"])
    hyp.set_proba([1], np.full((1, 5), 0.2))
    cropped = fit_to_recording(hyp, 3, "crop")
    assert [str(s) for s in cropped.stages] == ["W", "N2", "R"]
    assert np.allclose(cropped.proba[1], 0.2) and cropped.provenance[0] == "import"
    # Trailing unscored epochs are dropped under every policy, even 'pad'.
    assert fit_to_recording(hyp, 3, "pad").n_epochs == 3
    padded = fit_to_recording(Hypnogram(["N2"], start=30.0), 4, "pad")
    assert [str(s) for s in padded.stages] == ["UNS", "N2", "UNS", "UNS"]
    assert padded.start == 0.0 and padded.provenance[0] == "none"
    both = fit_to_recording(Hypnogram(["N1", "N2", "N3"], start=-30.0), 4, "crop_or_pad")
    assert [str(s) for s in both.stages] == ["N2", "N3", "UNS", "UNS"]
    with pytest.raises(HypnogramMismatchError, match="cropping cannot fix") as err:
        fit_to_recording(Hypnogram(["W"]), 3, "crop")
    assert err.value.problems and "2 epoch(s) short" in err.value.problems[0]
    with pytest.raises(HypnogramMismatchError, match="scored epochs outside"):
        fit_to_recording(Hypnogram(["W", "N2"]), 1, "pad")
    with pytest.raises(HypnogramMismatchError):
        fit_to_recording(Hypnogram(["W"], start=10.0), 1, "crop_or_pad")
    with pytest.raises(ValueError, match="'policy' parameter.*'crop'.*got 'stretch'"):
        fit_to_recording(hyp, 3, "stretch")
