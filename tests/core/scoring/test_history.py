"""Audit log: one fsync-ed JSON line per event, append-only, tolerant of a torn last line."""
from __future__ import annotations

import json
import os
import re

import pytest

from eegvlm_desktop.core.scoring import history
from eegvlm_desktop.core.scoring.history import AuditLog, utc_now_iso

ISO_MS_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def label_event(epoch: int, new: str = "N2") -> dict:
    return {"event": "label", "user": "ana", "epoch": epoch, "old": "UNS", "new": new,
            "source": "expert", "old_source": "none", "action": "set"}


def test_utc_now_iso_has_milliseconds_and_z():
    assert ISO_MS_UTC.match(utc_now_iso())


def test_append_then_read_round_trips_in_order(tmp_path):
    log = AuditLog(tmp_path / "sub" / "a.jsonl")  # folder created on first append
    assert log.read() == []
    events = [label_event(i) for i in range(5)]
    for e in events:
        log.append(e)
    got = log.read()
    assert [{k: v for k, v in g.items() if k != "time"} for g in got] == events
    assert all(ISO_MS_UTC.match(g["time"]) for g in got)
    lines = log.path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 5 and all(json.loads(ln)["event"] == "label" for ln in lines)
    assert log.skipped_lines == 0


def test_given_time_is_kept_and_caller_dict_not_modified(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl")
    event = {"event": "open", "user": "ana", "time": "2020-01-01T00:00:00.000Z"}
    snapshot = dict(event)
    log.append(event)
    plain = {"event": "open", "user": "bo"}
    log.append(plain)
    assert event == snapshot and "time" not in plain
    first, second = log.read()
    assert first["time"] == "2020-01-01T00:00:00.000Z"
    assert ISO_MS_UTC.match(second["time"])


def test_existing_lines_are_never_rewritten(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl")
    log.append(label_event(0))
    before = log.path.read_bytes()
    log.append(label_event(1))
    AuditLog(log.path).append_many([label_event(2), label_event(3)])
    after = log.path.read_bytes()
    assert after.startswith(before) and after.count(b"\n") == 4


def test_each_append_is_fsynced(tmp_path, monkeypatch):
    synced: list[int] = []
    real = os.fsync

    def fsync(fd):
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(history.os, "fsync", fsync)
    log = AuditLog(tmp_path / "a.jsonl")
    log.append(label_event(0))
    n_first = len(synced)  # file, plus the directory once on POSIX
    assert n_first >= 1
    log.append(label_event(1))
    assert len(synced) == n_first + 1
    log.append_many([label_event(i) for i in range(2, 50)])  # a batch: one fsync
    assert len(synced) == n_first + 2
    assert len(log.read()) == 50


def test_torn_last_line_is_skipped_and_next_append_is_readable(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl")
    log.append(label_event(0))
    log.append(label_event(1))
    full = log.path.read_bytes()
    # simulate a crash mid-append: half of a third line, no newline
    third = json.dumps({"time": utc_now_iso(), **label_event(2)}).encode()
    with open(log.path, "ab") as f:
        f.write(third[: len(third) // 2])
    assert [e["epoch"] for e in log.read()] == [0, 1]
    assert log.skipped_lines == 1

    log.append(label_event(3, "R"))
    data = log.path.read_bytes()
    assert data.startswith(full + third[: len(third) // 2])  # torn bytes kept, not rewritten
    assert [e["epoch"] for e in log.read()] == [0, 1, 3]
    assert log.skipped_lines == 1


def test_torn_multibyte_utf8_is_skipped(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl")
    log.append({"event": "open", "user": "Zo\u00eb"})
    line = json.dumps({"event": "open", "user": "\u00e9\u00e9\u00e9"}, ensure_ascii=False)
    with open(log.path, "ab") as f:
        f.write(line.encode("utf-8")[:-4])  # cut inside a 2-byte character
    assert [e["user"] for e in log.read()] == ["Zo\u00eb"]


@pytest.mark.parametrize("bad, exc", [
    (["not", "a", "dict"], TypeError),
    ({"user": "ana"}, ValueError),  # no event name
    ({"event": "label", "value": object()}, TypeError),  # not JSON-serialisable
    ({"event": "label", "p": float("nan")}, ValueError),  # NaN is not JSON
])
def test_invalid_events_raise_and_write_nothing(tmp_path, bad, exc):
    log = AuditLog(tmp_path / "a.jsonl")
    log.append(label_event(0))
    before = log.path.read_bytes()
    with pytest.raises(exc):
        log.append_many([label_event(1), bad])
    assert log.path.read_bytes() == before


def test_two_writers_append_without_clobbering(tmp_path):
    """O_APPEND: a second log object (another window) never overwrites the first's lines."""
    a, b = AuditLog(tmp_path / "a.jsonl"), AuditLog(tmp_path / "a.jsonl")
    for i in range(10):
        (a if i % 2 else b).append(label_event(i))
    assert [e["epoch"] for e in a.read()] == list(range(10))
