"""SIGKILL the real app right after scoring: every confirmed label must be there on reopen."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from eegvlm_desktop.core.scoring.document import open_document

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")


def test_sigkill_after_scoring_loses_nothing(tiny_edf, tmp_path):
    child = Path(__file__).with_name("kill_child.py")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen([sys.executable, str(child), str(tiny_edf), str(tmp_path), "W123R2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 90)
        assert ready, "child never finished scoring"
        line = proc.stdout.readline().split()
        assert line and line[0] == "DONE", proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    expected = ["W", "N1", "N2", "N3", "R", "N2"]
    assert line[1:7] == expected
    doc = open_document(tiny_edf, user="after", data_dir=tmp_path / "data")
    assert list(doc.hypnogram.stages[:6]) == expected
    assert all(p == "expert" for p in doc.hypnogram.provenance[:6])
    labels = [e for e in doc.store.audit.read() if e.get("event") == "label"]
    assert [e["new"] for e in labels] == expected
    assert all(e["user"] == "killtest" for e in labels)


def test_kill_between_audit_and_sidecar_write_is_replayed_on_open(tiny_edf, tmp_path, window):
    """The audit line is written first so that a crash before the sidecar write loses nothing."""
    child = Path(__file__).with_name("kill_child.py")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    # Sidecar writes 1 and 2 are W and N1; the child dies at the 3rd, after N2's audit line.
    proc = subprocess.run([sys.executable, str(child), str(tiny_edf), str(tmp_path), "W12",
                           "3"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert window.open_file(tiny_edf)  # its lock is the dead child's: taken over
    assert list(window.doc.hypnogram.stages[:4]) == ["W", "N1", "N2", "UNS"]
    message = window.statusBar().currentMessage()
    assert "Recovered 1 label from the audit trail" in message and "epoch 3 N2" in message
    assert "1 from the audit trail" in window.stats_panel.source.text()
    assert any("no longer running" in n for n in window.doc.notes)
