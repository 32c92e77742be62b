"""Luna's .eannot and .annot: what the writers put in each file, exact round trips, and the
reader on the time forms and extra classes that Luna's own files use.

The same files attached to the example night in the real Luna client are checked in
``test_luna_client.py`` beside this file."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from eegvlm_desktop.core.errors import HypnogramError
from eegvlm_desktop.core.hypnogram.hypnogram import Hypnogram
from eegvlm_desktop.core.hypnogram.read import read_hypnogram
from eegvlm_desktop.core.hypnogram.write import format_from_name, write_hypnogram


def night() -> Hypnogram:
    """Every label and every provenance, starting two epochs into the recording."""
    return Hypnogram(["UNS", "W", "N1", "ART", "N2", "N3", "R", "UNS"], start=60.0,
                     scorer="Dr. A",
                     provenance=["none", "expert", "model", "expert", "accepted", "import",
                                 "expert", "none"])


def stages(hyp: Hypnogram) -> list[str]:
    return [str(s) for s in hyp.stages]


def test_file_names_pick_the_luna_formats(tmp_path):
    assert format_from_name(tmp_path / "n.eannot") == "eannot"
    assert format_from_name(tmp_path / "N.ANNOT") == "annot"


def test_eannot_is_one_luna_stage_per_epoch_from_the_recording_start(tmp_path):
    path = write_hypnogram(night(), tmp_path / "n.eannot")
    # Two leading '?' for the 60-s offset; artefact is '?' too (Luna has no such stage);
    # the last line ends in a newline, without which Luna drops it.
    assert path.read_bytes() == b"?\n?\n?\nW\nN1\n?\nN2\nN3\nR\n?\n"
    res = read_hypnogram(path)
    assert res.fmt == "eannot" and res.hypnogram.start == 0.0
    assert stages(res.hypnogram) == ["UNS"] * 3 + ["W", "N1", "UNS", "N2", "N3", "R", "UNS"]
    assert ("?", "UNS") in res.mapping and ("N1", "N1") in res.mapping


@pytest.mark.parametrize("hyp, match", [
    (Hypnogram(["W", "N2"], epoch_length=20.0), "20-s epochs.*Luna .annot"),
    (Hypnogram(["W", "N2"], start=15.0), "starts at 15 s.*Luna .annot"),
])
def test_eannot_refuses_what_it_cannot_store_and_points_to_annot(tmp_path, hyp, match):
    with pytest.raises(HypnogramError, match=match):
        write_hypnogram(hyp, tmp_path / "n.eannot")
    assert not (tmp_path / "n.eannot").exists()


def test_annot_rows_and_exact_round_trip(tmp_path):
    hyp = night()
    path = write_hypnogram(hyp, tmp_path / "n.annot")
    lines = path.read_text().splitlines()
    assert lines[0] == "class\tinstance\tchannel\tstart\tstop\tmeta"
    assert lines[1] == "?\t.\t.\t60\t90\tprovenance=none"
    assert lines[3] == "N1\t.\t.\t120\t150\tprovenance=model"
    assert lines[4] == "?\tART\t.\t150\t180\tprovenance=expert"
    assert len(lines) == 1 + hyp.n_epochs and path.read_text().endswith("\n")
    res = read_hypnogram(path)
    assert res.fmt == "annot" and res.notes == []
    back = res.hypnogram
    assert stages(back) == stages(hyp) and back.start == 60.0
    assert list(back.provenance) == list(hyp.provenance)
    assert ("?/ART", "ART") in res.mapping


def test_annot_refuses_a_start_before_the_recording(tmp_path):
    with pytest.raises(HypnogramError, match="30 s before the recording"):
        write_hypnogram(Hypnogram(["W", "N2"], start=-30.0), tmp_path / "n.annot")


def test_annot_reader_takes_lunas_time_forms_and_skips_other_classes(tmp_path):
    path = tmp_path / "luna.annot"
    path.write_text(
        "# N2 | N2 sleep | provenance[txt]\n"
        "# arousal | EEG arousal\n"
        "class\tinstance\tchannel\tstart\tstop\tmeta\n"
        "arousal\ta1\tC3\t45.5\t+3\t.\n"
        "N2\t.\t.\te:3\t...\tprovenance=expert\n"      # 60 s until the next row
        "R\tR\t.\t0+00:02:00\t+60\t.\n"               # elapsed hh:mm:ss, duration
        "W\t.\t.\t00:11:00\t00:11:30\t.\n"            # clock time: 180 s after 00:08:00
        "L\t.\t.\t210\t...\t.\n")                     # lights on until the end
    start = datetime(1989, 4, 25, 0, 8, tzinfo=timezone.utc)
    res = read_hypnogram(path, recording_start=start, recording_duration=300.0)
    hyp = res.hypnogram
    assert hyp.start == 60.0
    assert stages(hyp) == ["N2", "N2", "R", "R", "W", "UNS", "UNS", "UNS"]
    assert list(hyp.provenance[:3]) == ["expert", "expert", "import"]
    assert any("'L' (lights on)" in n for n in res.notes)
    assert any("not sleep stages were ignored ('arousal')" in n for n in res.notes)


def test_annot_clock_times_cross_midnight_and_older_four_column_rows(tmp_path):
    path = tmp_path / "old.annot"
    path.write_text("W\t.\t23:59:30\t00:00:00\nN1\t.\t00:00:00\t+30\n")
    res = read_hypnogram(path, recording_start=datetime(2020, 1, 1, 23, 59))
    assert stages(res.hypnogram) == ["W", "N1"] and res.hypnogram.start == 30.0


@pytest.mark.parametrize("text, kwargs, match", [
    ("N2\t.\t.\t01-01-20-00:00:00\t+30\t.\n", {}, "time '01-01-20-00:00:00' is not one"),
    ("N2\t.\t.\t0\t30\t.\nN2\t30\n", {}, "line 2: .*6 tab-separated columns.*has 2"),
    ("W\t.\t.\t23:00:00\t+30\t.\n", {}, "clock time; import the file into an open recording"),
    ("W\t.\t.\t60\t30\t.\n", {}, "line 1: the stop '30' is before the start '60'"),
    ("W\t.\t.\t0\t...\t.\n", {}, "ends with '...'"),
    ("N2\t.\t.\tsoon\t+30\t.\n", {}, "the time 'soon'"),
    ("N2\t.\t.\t0\t+x\t.\n", {}, "the stop 'x' is not a number"),
    ("N2\t.\t.\tnan\t+30\t.\n", {}, "the time 'nan'"),
    ("N2\t.\t.\t0\t.\t.\n", {}, "a start but no stop time"),
])
def test_annot_reader_errors_name_the_line_and_the_value(tmp_path, text, kwargs, match):
    path = tmp_path / "bad.annot"
    path.write_text(text)
    with pytest.raises(HypnogramError, match=match):
        read_hypnogram(path, **kwargs)


def test_eannot_reader_maps_luna_codes_and_refuses_other_labels(tmp_path):
    path = tmp_path / "n.eannot"
    path.write_text("L\nW\nN4\nREM\nM\n")
    res = read_hypnogram(path)
    assert stages(res.hypnogram) == ["UNS", "W", "N3", "R", "UNS"]
    assert any("'L' (lights on), 'M' (movement)" in n for n in res.notes)
    path.write_text("W\nN2\narousal\n")
    with pytest.raises(HypnogramError, match="not sleep stages: 'arousal'"):
        read_hypnogram(path)


def test_luna_annot_is_detected_by_content_but_a_commented_text_file_is_not(tmp_path):
    annot = tmp_path / "luna-out.txt"  # Luna reads .txt and .tsv as .annot too
    annot.write_text("class\tinstance\tchannel\tstart\tstop\tmeta\nW\t.\t.\t0\t30\t.\n")
    assert read_hypnogram(annot).fmt == "annot"
    headed = tmp_path / "headed.txt"
    headed.write_text("# W | wake\nW\t.\t.\t0\t30\t.\n")
    assert read_hypnogram(headed).fmt == "annot"
    plain = tmp_path / "codes.txt"
    plain.write_text("# YASA codes\n0\n2\n")
    assert read_hypnogram(plain).fmt == "yasa-txt"
