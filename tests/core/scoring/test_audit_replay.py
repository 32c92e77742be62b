"""Labels in the audit trail but not in the sidecar (a crash between the two writes) come back."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from eegvlm_desktop.core.scoring.document import open_document
from tests.conftest import write_edf

REPO = Path(__file__).resolve().parents[3]

# Scores epochs 0, 1, 2 and dies (SIGKILL) on the third sidecar write: after the audit
# line of epoch 2 was appended and fsync-ed, before the sidecar includes it.
_CHILD = r"""
import os, signal, sys
from pathlib import Path
from eegvlm_desktop.core.scoring import label_store
from eegvlm_desktop.core.scoring.document import open_document

real, calls = label_store.LabelStore.save, []

def save(self, hyp, *args, **kwargs):
    calls.append(1)
    if len(calls) == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, hyp, *args, **kwargs)

label_store.LabelStore.save = save
doc = open_document(sys.argv[1], user="killed", data_dir=Path(sys.argv[2]))
for i, stage in enumerate(["W", "N1", "N2"]):
    doc.session.label([i], stage)
"""


def _kill_between_audit_and_sidecar(recording: Path, data_dir: Path, at_save: int = 3) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(recording), str(data_dir),
                           str(at_save)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_kill_between_audit_and_sidecar_write_loses_nothing(tiny_edf, tmp_path):
    _kill_between_audit_and_sidecar(tiny_edf, tmp_path / "data")
    sidecar = json.loads(tiny_edf.with_name("tiny.edf.eegvlm.json").read_text())
    assert sidecar["hypnogram"]["stages"][:3] == ["W", "N1", "UNS"]  # the crash happened
    doc = open_document(tiny_edf, user="after", data_dir=tmp_path / "data")
    assert list(doc.hypnogram.stages[:4]) == ["W", "N1", "N2", "UNS"]
    assert doc.hypnogram.provenance[2] == "expert"
    assert "Recovered 1 label" in doc.recovery.message() and "epoch 3 N2" in doc.recovery.message()
    assert "1 from the audit trail" in doc.source
    # Saved at once, with a line saying so; the next open has nothing left to replay.
    saved = json.loads(doc.store.location.read_text())["hypnogram"]["stages"]
    assert saved[:3] == ["W", "N1", "N2"]
    assert doc.store.audit.read()[-1]["event"] == "replay"
    doc.close()
    again = open_document(tiny_edf, user="after", data_dir=tmp_path / "data")
    assert not again.recovery.changes and list(again.hypnogram.stages[:3]) == ["W", "N1", "N2"]
    again.close()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_kill_before_the_first_sidecar_write_loses_nothing(tiny_edf, tmp_path):
    _kill_between_audit_and_sidecar(tiny_edf, tmp_path / "data", at_save=1)
    assert not tiny_edf.with_name("tiny.edf.eegvlm.json").exists()
    with open_document(tiny_edf, user="after", data_dir=tmp_path / "data") as doc:
        assert doc.hypnogram[0] == "W" and doc.hypnogram.n_scored() == 1
        assert doc.source.startswith("Recovered 1 label")


def _scored(tiny_edf, tmp_path):
    with open_document(tiny_edf, user="a", data_dir=tmp_path / "data") as doc:
        doc.session.label([0], "W")
        doc.session.label([1], "N1")
        return doc.store


def test_sidecar_without_audit_end_replays_by_time(tiny_edf, tmp_path):
    store = _scored(tiny_edf, tmp_path)
    doc = json.loads(store.location.read_text())
    del doc["audit_end"]  # a sidecar written before the field existed
    doc["hypnogram"]["stages"][1] = "UNS"
    doc["hypnogram"]["provenance"][1] = "none"
    doc["saved"] = store.audit.read()[-1]["time"]  # saved at the ms of the lost label
    store.location.write_text(json.dumps(doc))
    with open_document(tiny_edf, user="b", data_dir=tmp_path / "data") as reopened:
        assert list(reopened.hypnogram.stages[:2]) == ["W", "N1"]


def test_audit_lines_of_another_version_of_the_file_are_not_replayed(tiny_edf, tmp_path):
    store = _scored(tiny_edf, tmp_path)
    store.audit.append_many([
        {"event": "open", "fingerprint": "1:other"},
        {"event": "label", "epoch": 5, "new": "R", "source": "expert"},
        {"event": "label", "epoch": 99, "new": "R", "source": "expert"}])
    with open_document(tiny_edf, user="b", data_dir=tmp_path / "data") as doc:
        assert doc.hypnogram[5] == "UNS" and not doc.recovery.changes


def test_unusable_audit_lines_are_counted_not_applied(tiny_edf, tmp_path):
    store = _scored(tiny_edf, tmp_path)
    store.audit.append_many([
        {"event": "label", "epoch": 99, "new": "R", "source": "expert"},
        {"event": "label", "epoch": 4, "new": "REM?", "source": "expert"},
        {"event": "label", "epoch": 4, "new": "R", "source": "expert"}])
    with open_document(tiny_edf, user="b", data_dir=tmp_path / "data") as doc:
        assert doc.hypnogram[4] == "R" and doc.recovery.skipped == 2
        assert "2 audit lines could not be replayed" in doc.recovery.message()


def test_read_only_open_replays_in_memory_and_writes_nothing(tiny_edf, tmp_path):
    store = _scored(tiny_edf, tmp_path)
    store.audit.append({"event": "label", "epoch": 4, "new": "R", "source": "expert"})
    before = {p: p.stat().st_mtime_ns for p in tiny_edf.parent.iterdir()}
    with open_document(tiny_edf, user="b", data_dir=tmp_path / "data",
                       read_only="just looking.") as doc:
        assert doc.hypnogram[4] == "R"
    assert {p: p.stat().st_mtime_ns for p in tiny_edf.parent.iterdir()} == before


def test_read_from_refuses_an_offset_that_does_not_fit(tmp_path):
    from eegvlm_desktop.core.scoring.history import AuditLog

    log = AuditLog(tmp_path / "a.jsonl")
    assert log.read_from(0) == []
    end = log.append({"event": "x"})
    assert end == log.size() and log.read_from(end) == []
    log.append({"event": "y"})
    assert [e["event"] for e in log.read_from(end)] == ["y"]
    assert log.read_from(end - 1) is None  # not at a line start
    assert log.read_from(10 ** 6) is None  # past the end (log replaced)
    with pytest.raises(ValueError, match="'offset'"):
        log.read_from(-1)
