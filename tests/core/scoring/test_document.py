"""Opening a night: all or nothing, one scoring window per night, clear refusals."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eegvlm_desktop.core.errors import ReadOnlyError, RecordingError, StorageError
from eegvlm_desktop.core.scoring.document import open_document
from eegvlm_desktop.core.scoring.label_lock import LabelsLockedError, read_owner
from tests.conftest import write_broken_edf, write_edf

REPO = Path(__file__).resolve().parents[3]


def test_recording_shorter_than_one_epoch_is_a_clear_error(tmp_path):
    short = write_edf(tmp_path / "short.edf", duration_s=20.0)
    with pytest.raises(RecordingError, match=r"short\.edf.*20 s long, shorter than one 30-s"):
        open_document(short, user="a", data_dir=tmp_path / "data")
    assert not list(tmp_path.glob("short.edf.eegvlm*"))  # nothing written, no lock left


def test_second_document_on_a_night_is_refused_and_nothing_is_lost(tiny_edf, tmp_path):
    a = open_document(tiny_edf, user="ana", data_dir=tmp_path / "data")
    assert a.store.lock_path.exists()
    with pytest.raises(LabelsLockedError, match="ana") as info:
        open_document(tiny_edf, user="ben", data_dir=tmp_path / "data")
    assert str(os.getpid()) in str(info.value)
    b = open_document(tiny_edf, user="ben", data_dir=tmp_path / "data",
                      read_only=f"{info.value}")
    for i in range(4):
        a.session.label([i], "N2")
    with pytest.raises(ReadOnlyError, match="read-only"):
        b.session.label([7], "N3")
    with pytest.raises(ReadOnlyError):
        b.session.undo()
    assert b.hypnogram[7] == "UNS"
    a.session.label([4], "N2")
    saved = json.loads(a.store.location.read_text())["hypnogram"]["stages"]
    assert saved[:5] == ["N2"] * 5
    labels = [e for e in a.store.audit.read() if e["event"] == "label"]
    assert {e["user"] for e in labels} == {"ana"}  # the read-only window wrote nothing
    b.close()  # closing the read-only one leaves the owner's lock alone
    assert read_owner(a.store.lock_path).user == "ana"
    a.close()
    assert not a.store.lock_path.exists()
    with open_document(tiny_edf, user="ben", data_dir=tmp_path / "data") as c:
        assert c.hypnogram.n_scored() == 5 and c.read_only is None


def test_night_held_by_another_process_is_refused_until_it_dies(tiny_edf, tmp_path):
    code = ("import sys\nfrom pathlib import Path\n"
            "from eegvlm_desktop.core.scoring.document import open_document\n"
            "doc = open_document(sys.argv[1], user='other', data_dir=Path(sys.argv[2]))\n"
            "doc.session.label([0], 'W')\nprint('OPEN', flush=True)\nsys.stdin.readline()\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", code, str(tiny_edf), str(tmp_path / "data")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "OPEN"
        with pytest.raises(LabelsLockedError, match=f"other on .*process {proc.pid}"):
            open_document(tiny_edf, user="me", data_dir=tmp_path / "data")
    finally:
        proc.kill()
        proc.wait(30)
        proc.stdin.close()
        proc.stdout.close()
    with open_document(tiny_edf, user="me", data_dir=tmp_path / "data") as doc:
        assert doc.hypnogram[0] == "W"
        assert any(f"process {proc.pid}" in n and "no longer running" in n for n in doc.notes)


def test_a_failed_open_gives_the_lock_back(tiny_edf, tmp_path):
    with open_document(tiny_edf, user="a", data_dir=tmp_path / "data") as doc:
        doc.session.label([0], "W")
    write_edf(tiny_edf, seed=1)  # the recording was replaced by another version
    with pytest.raises(StorageError, match="different version"):
        open_document(tiny_edf, user="a", data_dir=tmp_path / "data")
    # Not "locked by yourself": the failed attempt released its lock.
    with open_document(tiny_edf, user="a", data_dir=tmp_path / "data",
                       discard_mismatched=True) as doc:
        assert doc.hypnogram.n_scored() == 0


def test_lost_lock_refuses_to_save_loudly(tiny_edf, tmp_path):
    doc = open_document(tiny_edf, user="ana", data_dir=tmp_path / "data")
    doc.session.label([0], "W")
    lock = doc.store.lock_path
    owner = json.loads(lock.read_text())
    lock.write_text(json.dumps({**owner, "user": "ben", "token": "other"}))  # taken over
    with pytest.raises(StorageError, match="NOT saved"):
        doc.session.label([1], "N1")
    assert doc.session.has_unsaved
    saved = json.loads(doc.store.location.read_text())["hypnogram"]["stages"]
    assert saved[:2] == ["W", "UNS"]
    assert [e["new"] for e in doc.store.audit.read() if e["event"] == "label"] == ["W"]
    doc.close()
    assert json.loads(lock.read_text())["user"] == "ben"  # the new owner keeps its lock


def test_signal_problems_and_reader_notes_are_document_notes(tmp_path):
    path = write_broken_edf(tmp_path / "norange.edf", "no_range")
    with open_document(path, user="a", data_dir=tmp_path / "data") as doc:
        assert [q.kind for q in doc.quality] == ["no_range", "no_range"]
        assert any("'EEG Fpz-Cz'" in n and "physical minimum" in n for n in doc.notes)
        # MNE's own note on the file reaches the scorer too (it used to stop at `info`).
        assert any("Physical range is not defined" in n for n in doc.notes)


def test_a_later_signal_check_gives_the_same_notes_in_the_same_order(tmp_path):
    from eegvlm_desktop.core.recording.quality import check_signal_quality

    path = write_broken_edf(tmp_path / "norange.edf", "no_range")
    with open_document(path, user="a", data_dir=tmp_path / "data") as now:
        expected = list(now.notes)
    with open_document(path, user="a", data_dir=tmp_path / "data2",
                       check_quality=False) as later:
        assert not later.quality_checked and later.quality == []
        assert not any("physical minimum" in n for n in later.notes)
        later.set_quality(check_signal_quality(later.recording))
        assert later.quality_checked and [q.kind for q in later.quality] == ["no_range"] * 2
        assert later.notes == expected


def test_hypnogram_mismatch_messages_have_no_doubled_punctuation(tiny_edf, tmp_path):
    from eegvlm_desktop.core.errors import HypnogramError, HypnogramFitError

    hyp = tmp_path / "h.csv"
    hyp.write_text("onset,duration,stage\n-60,30,N2\n-30,30,N2\n0,30,N3\n")
    with open_document(tiny_edf, user="a", data_dir=tmp_path / "data") as doc:
        with pytest.raises(HypnogramFitError) as fit:
            doc.import_hypnogram(hyp)
        with pytest.raises(HypnogramError) as crop:
            doc.import_hypnogram(hyp, "pad")  # scored epochs outside: padding cannot help
        result = doc.import_hypnogram(hyp, "crop_or_pad")
    for text in (str(fit.value), str(crop.value), result.notes[-1]):
        assert ".." not in text and ".;" not in text and text.endswith(".")
    assert "cropping. The hypnogram is 9 epoch(s) short" in str(fit.value)
